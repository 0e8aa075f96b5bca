"""The peers benchmark (``python -m benchmarks.peers``): mem0 open-source measured side by side
with the plugin, in one process, on the same callers.

It needs its own environment (``benchmarks/peers/requirements.txt``: mem0, qdrant-client,
chromadb, sentence-transformers and a MiniLM model shipped in a wheel), kept out of the default
install. No network: the embedding model loads from the installed wheel, mem0's and chroma's
telemetry are off, and the process refuses any connection that leaves the machine.
"""
