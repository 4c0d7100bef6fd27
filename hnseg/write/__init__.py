"""Write outputs to the grand-challenge output interfaces."""
