"""hnseg.phantoms"""
