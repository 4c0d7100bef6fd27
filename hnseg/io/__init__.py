"""Reading and writing images (SimpleITK) with clear errors and atomic writes."""
