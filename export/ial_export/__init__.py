"""The torch-free side of ial_ext's deployment: the ``ial-deploy`` runner and what training shares with it.

numpy, Pillow and onnxruntime only; nothing here imports torch or ial_ext (``ial_ext`` imports
from here, never the other way round). Installs on its own with ``pip install ./export`` and is
part of ``pip install .`` as well.

- ``ial_export.deploy``: the ``ial-deploy`` runner, ``main(argv)``.
- ``ial_export.metadata``: the contract between the exporter and the runner (ONNX metadata_props).
- ``ial_export.images``: ``read_rgb`` (EXIF orientation applied), ``upright_size``, ``normalize``
  and the ImageNet mean and std, used by training as well.
- ``ial_export.palette``: the VOC colour map.

The exporter, which needs torch, is ``ial_ext.export`` (in the main package, source in export/exporter/).
"""
__version__ = "0.1.0"
