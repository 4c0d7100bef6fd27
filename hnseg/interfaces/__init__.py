"""hnseg.interfaces"""
