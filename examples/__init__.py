"""The gallery: scripts that recreate the theory notes' pictures with fastgd (run each one, or
``fastgd demo --plot DIR`` for all of them)."""
