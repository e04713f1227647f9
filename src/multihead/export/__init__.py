"""Deployment: ONNX graphs of multihead models (``export_onnx``) and generation on onnxruntime.

```python
from multihead.export import export_onnx, load_onnx_translator
export_onnx("runs/translate-multi30k/best", "onnx/multi30k")
translator = load_onnx_translator("onnx/multi30k")
print(translator(["A dog runs on the beach."]))
```
"""

from multihead.export.decoding import OnnxDecodingState, generate_onnx, stream_onnx
from multihead.export.onnx_export import export_model, export_onnx
from multihead.export.onnx_tasks import (
    OnnxTextGenerator,
    OnnxTranslator,
    load_onnx_text_generator,
    load_onnx_translator,
    predict_onnx,
)
from multihead.export.runtime import OnnxModel, load_onnx

__all__ = ["OnnxDecodingState", "OnnxModel", "OnnxTextGenerator", "OnnxTranslator", "export_model", "export_onnx",
           "generate_onnx", "load_onnx", "load_onnx_text_generator", "load_onnx_translator", "predict_onnx",
           "stream_onnx"]
