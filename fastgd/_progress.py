"""The progress bar shared by the estimators, the streaming trainer and the command line.

tqdm is an optional dependency (the ``progress`` extra): it is imported only when a bar is
asked for, so ``import fastgd`` and every fit without a bar work without it.
"""

_INSTALL_HINT = "pip install fastgd[progress]"


def make_bar(progress, total=None, desc=None, unit="epoch"):
    """None for progress False/None; a new tqdm.tqdm(total=total, desc=desc, unit=unit) for True; a tqdm instance
    passed in is reset(total=total) and returned. Without tqdm installed, True raises ImportError naming
    'pip install fastgd[progress]'.

    Parameters
    ----------
    progress : bool, None or tqdm.tqdm
        What the caller was given: ``False``/``None`` (no bar), ``True`` (a new bar on
        standard error, closed by the caller) or a bar the user made (for instance to write
        into a file or a notebook widget); the user's bar is reused, not closed.
    total : int or None, default=None
        Number of units the bar counts to (None: unknown, the bar counts without a total).
    desc : str or None, default=None
        Text in front of the bar.
    unit : str, default="epoch"

    Returns
    -------
    tqdm.tqdm or None
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            import tqdm
        except ImportError as exc:
            raise ImportError(
                f"progress=True shows a tqdm progress bar, and tqdm is not installed: {_INSTALL_HINT} "
                "(or pip install tqdm), or leave progress=False (verbose=1 prints one line per epoch)."
            ) from exc
        return tqdm.tqdm(total=total, desc=desc, unit=unit)
    if not (hasattr(progress, "reset") and hasattr(progress, "update")):
        raise TypeError(f"progress must be True, False, None or a tqdm progress bar; got {progress!r}.")
    progress.reset(total=total)
    return progress
