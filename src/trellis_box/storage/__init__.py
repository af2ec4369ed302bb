"""Where a batch's files live: a local folder or an S3 prefix, behind one small protocol."""

from trellis_box.storage.base import Storage, is_remote, open_storage

__all__ = ["Storage", "is_remote", "open_storage"]
