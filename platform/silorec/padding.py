"""The padding index of ``[batch, length]`` item-index tensors.

Its own module so that the models and the server's merges (which build pseudo-user
histories and must not import the scenario schema through :mod:`silorec.models`)
share one definition.
"""

PAD = -1
