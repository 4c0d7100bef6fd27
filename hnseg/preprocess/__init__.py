"""hnseg.preprocess"""
