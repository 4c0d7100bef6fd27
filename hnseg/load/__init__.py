"""Load a case for a task and validate it before any compute."""
