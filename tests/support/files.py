"""Programs and files a test writes for ukrun to meet."""
import os


def write(directory, name, data, mode=0o755):
    """``data`` (text or bytes) as DIRECTORY/NAME with ``mode``; its path."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(path, mode)
    return path
