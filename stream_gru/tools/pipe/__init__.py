"""The line protocol of ``stream-gru run``: CSV lines in, one CSV line out per line.

Two layouts. Without a header, a line is ``key,f1,...,fI`` and the output
``key,y1,...,yO``. With a header (a CSV file of one's own, say), the key and the
features are found by column name: the key in ``key_column`` (default: the column the
model's recordings were cut by in training, else the first column that is not a
feature), the features in the model's feature names (or ``columns``); other columns are
ignored, and the output starts with a header line ``key,out1,...``. ``label`` appends a
classifier's predicted class.

The protocol works on bytes, whatever the locale. A key is taken byte for byte as sent
(spaces, case and bytes that are not UTF-8 included: two keys are one stream only where
their bytes are equal) and written back the same; a key with a control character is
refused. Fields follow RFC 4180 quoting (``"PUMP,03"`` keeps its comma, ``""`` is a
quote); the delimiter is the header's (comma, semicolon, tab or bar), or a comma. A
number is ASCII: an optional sign, digits with an optional point, an optional exponent
(``-1.5e3``, ``.5``, ``7.``); NaN and infinities are refused by name, and a value is
refused only where its float32 is not finite (``3.4028235e38`` is float32's largest).

One stream per key in a ``StreamPool``, opened on the key's first good line, at most
``max_streams`` of them; ``idle_timeout`` closes streams idle that long (their state is
dropped: a key that comes back starts afresh). Lines that arrive together are stepped
together, in one batched call per tick (a key seen twice in one arrival goes into the
next tick, so its samples stay in order), and the outputs are written in input order,
flushed at once. Reading is linear in the input, and a line longer than
``max_line_bytes`` is skipped unread. A bad line gets one message on the error stream
naming its 1-based line number and the problem; it changes no stream, and the lines
after it are processed as usual.
"""

from .fields import format_output, parse_number, split_fields
from .layout import LineLayout
from .options import (
    DEFAULT_MAX_KEY_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_STREAMS,
    HeaderMode,
    PipeError,
    PipeOptions,
    PipeStats,
)
from .reading import TooLong, read_arrivals
from .serve import serve_lines

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_STREAMS",
    "HeaderMode",
    "LineLayout",
    "PipeError",
    "PipeOptions",
    "PipeStats",
    "TooLong",
    "format_output",
    "parse_number",
    "read_arrivals",
    "serve_lines",
    "split_fields",
]
