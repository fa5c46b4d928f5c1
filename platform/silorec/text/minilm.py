"""Facts about all-MiniLM-L6-v2, in a module that imports nothing: the scenario
schema validates against them without importing the encoders (which import the
schema's settings), so the imports run one way."""

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384
#: Transformer layers and position embeddings of all-MiniLM-L6-v2.
MINILM_LAYERS = 6
MINILM_MAX_TOKENS = 512
