"""``stream-gru compare``: two model versions on recorded data (``models``, runtime
only), or a GRU and an LSTM trained with one budget (``cells``)."""
