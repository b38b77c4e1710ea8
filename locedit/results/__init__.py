"""Operations over finished runs and committed results, torch-free: collect / analyse a results
folder (``python -m locedit.results``), compare models with the paper, sensitivity, run agreement,
unfinished jobs, the edit-strength sweep."""
