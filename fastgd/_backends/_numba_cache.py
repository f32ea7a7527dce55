"""Where Numba keeps fastgd's compiled kernels on disk: a folder only this user can write.

Numba's ``cache=True`` looks, when a kernel is decorated, for a folder to cache it in: the
one named by ``NUMBA_CACHE_DIR``, the package's own ``__pycache__``, then a user-wide folder
under the home directory (``~/.cache/numba``). With a read-only install and an unwritable
home (a service account, a container), none is usable and the decoration raises ("cannot
cache function ...: no locator available"). The fallback chosen here must not be a fixed
folder shared by all users of the machine: the second user could not write to it, and a user
who made it writable for others could plant index files (pickles) that run as the next user.

:func:`configure` leaves Numba's own choice alone when it works, and otherwise points Numba
at ``<tmp>/fastgd-numba-cache-<uid>``, created with mode 0700 and used only when it is a real
folder (not a link) owned by this user that no one else can write. If that folder cannot be
trusted, kernels are cached in a fresh private folder for this process only (``mkdtemp``,
removed at exit): the first fit of each process then compiles, and works.
"""

import atexit
import getpass
import os
import shutil
import stat
import tempfile

CACHE_FOLDER_PREFIX = "fastgd-numba-cache"


def _writable_folder(path):
    """Whether Numba could cache in ``path`` (its own test: create it, write a file)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _user_wide_folder():
    from numba.misc.appdirs import AppDirs

    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def private_folder(path):
    """``path`` as a cache folder private to this user, or None when it cannot be trusted.

    Creates it with mode 0700 when missing. An existing ``path`` is accepted only if it is a
    folder (a symbolic link is refused), owned by this user, and neither group- nor
    world-accessible: otherwise another user could have planted files in it.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o077:
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return None
    return path


def _process_folder():
    path = tempfile.mkdtemp(prefix=CACHE_FOLDER_PREFIX + "-process-")  # 0700, unpredictable name
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def configure(kernel_module_file):
    """Choose where Numba caches the kernels defined in ``kernel_module_file``; call it
    before they are decorated. Returns the folder set as Numba's ``CACHE_DIR``, or None when
    Numba's own choice (``NUMBA_CACHE_DIR``, the package, the home folder) is usable.

    The folder is set in Numba's configuration, not in the environment, so child processes
    (perhaps another user's) make their own choice.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None  # the user's explicit choice
    if _writable_folder(os.path.join(os.path.dirname(os.path.abspath(kernel_module_file)), "__pycache__")):
        return None
    if _writable_folder(_user_wide_folder()):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    folder = private_folder(os.path.join(tempfile.gettempdir(), f"{CACHE_FOLDER_PREFIX}-{uid}"))
    if folder is None:
        folder = _process_folder()
    from numba.core import config

    config.CACHE_DIR = folder
    return folder
