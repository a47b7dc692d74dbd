"""A registry of frozen entries: refuses duplicates, suggests close matches."""

import difflib


class Registry:
  """Maps names to frozen entries; the single source of per-name metadata.

  Used for nets, preprocessing styles, optimizers and learning-rate schedules
  so that every CLI lists and validates names the same way.
  """

  def __init__(self, kind):
    """Creates an empty registry.

    Args:
      kind: What the entries are, for error messages ('network', 'optimizer').
    """
    self.kind = kind
    self._entries = {}

  def register(self, name, entry):
    """Adds `entry` under `name`.

    Raises:
      ValueError: if `name` is already registered.
    """
    if name in self._entries:
      raise ValueError(f'{self.kind} {name!r} is registered twice')
    self._entries[name] = entry
    return entry

  def get(self, name):
    """Returns the entry of `name`.

    Raises:
      ValueError: naming `name`, the close matches and all valid names.
    """
    try:
      return self._entries[name]
    except KeyError:
      raise ValueError(self.unknown_message(name)) from None

  def unknown_message(self, name):
    close = difflib.get_close_matches(str(name), self._entries, n=3, cutoff=0.6)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    return (f'Unknown {self.kind} {name!r}.{hint} '
            f'Valid names: {", ".join(self.names())}.')

  def names(self):
    return sorted(self._entries)

  def __contains__(self, name):
    return name in self._entries

  def __iter__(self):
    return iter(self.names())
