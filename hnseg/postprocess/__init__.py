"""hnseg.postprocess"""
