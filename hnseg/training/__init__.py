"""hnseg.training"""
