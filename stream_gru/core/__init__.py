"""One model, one stream: the model's spec, input checks, the onnxruntime session, the
axis layout and state codec of a model, and ``Model``/``Stream`` themselves.

Imports: numpy, onnxruntime; from the package ``formats`` and the base modules
(``errors``, ``agreement``). Never ``fleet`` or anything above (checked by ``make
lint``): what a pool needs from a model is public here (``AxisLayout``, ``StateCodec``,
``Model.run``, ``Model.one_step_graph()``, ``Model.pooled_graph()``).
"""
