"""``--app=obj``: YOLOv3 object detection (SPEC §8.4).

Modules, one job each:

* :mod:`.labels` — YOLO label files (``<stem>.txt``: ``class cx cy w h`` in [0, 1]) and the
  optional class-name file;
* :mod:`.boxes` — geometric transforms that move boxes with the image (torchvision v2 +
  ``tv_tensors.BoundingBoxes``), letterbox, and the way back to original pixels;
* :mod:`.data` — the training / test splits (images + padded box targets);
* :mod:`.layout` — the detection heads read from the network graph (grids, strides, anchors);
* :mod:`.loss` — the ``YOLOv3`` loss (registered in :data:`rmldnn_py.engine.losses.LOSSES`);
* :mod:`.postprocess` — decoding, confidence threshold, class-wise NMS;
* :mod:`.metrics` — mAP@0.5 and mAP@0.5:0.95 (torchmetrics), global across ranks;
* :mod:`.debug` — detection images (``"debug": true``);
* :mod:`.app` — :class:`~rmldnn_py.obj.app.ObjApp`, registered as ``obj`` in
  :data:`rmldnn_py.engine.app.APPS`.
"""
