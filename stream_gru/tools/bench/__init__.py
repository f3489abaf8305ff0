"""The benchmark behind ``make bench`` and ``stream-gru bench``."""
