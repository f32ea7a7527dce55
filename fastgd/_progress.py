"""Progress bars (tqdm, the ``progress`` extra) shared by everything that trains for a while."""


def make_bar(progress, total=None, desc=None, unit="epoch"):
    """A progress bar for ``progress``, or None.

    Parameters
    ----------
    progress : bool, None or tqdm.tqdm
        False or None: no bar (None is returned). True: a new ``tqdm.tqdm``. A tqdm instance:
        it is ``reset(total=total)`` and returned, so callers can place their own bar (a
        notebook bar, a position in a stack of bars).
    total : int or None
        Number of units expected (None: unknown).
    desc : str or None
        Label shown before the bar (for a new bar).
    unit : str, default="epoch"

    Raises
    ------
    ImportError
        ``progress=True`` without tqdm installed; the message names ``pip install fastgd[progress]``.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        try:
            import tqdm
        except ImportError as exc:
            raise ImportError("progress=True needs tqdm: pip install fastgd[progress]") from exc
        return tqdm.tqdm(total=total, desc=desc, unit=unit)
    progress.reset(total=total)
    return progress
