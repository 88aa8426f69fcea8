"""The compact Mask R-CNN of chapters 09-10, one module per part.

``config`` (every knob), ``anchors``, ``box_coding``, ``assign`` (matching and sampling),
``rpn``, ``box_head``, ``mask_head``, ``postprocess`` (detections and mask pasting), and
``maskrcnn``, which assembles them.
"""

from course.model.config import MaskRCNNConfig
from course.model.maskrcnn import MaskRCNN

__all__ = ["MaskRCNN", "MaskRCNNConfig"]
