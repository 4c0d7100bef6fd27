"""hnseg.predict"""
