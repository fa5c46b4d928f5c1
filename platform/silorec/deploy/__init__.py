"""How silorec is deployed for real: the processes of a federation and their command
lines (:mod:`.topology`), free of Flower itself so that they can be checked against the
compose files without starting anything."""
