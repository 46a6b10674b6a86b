"""FastAPI service: embeddings and language identification."""
