"""Search: embed a collection, build FAISS indices over it, and serve queries (see layout.py)."""
