"""Decoding: greedy search, beam search, sampling and streaming for ``DecoderLM`` and ``EncoderDecoder``.

```python
from multihead.generation import GenerationConfig, generate
config = GenerationConfig(max_new_tokens=32, num_beams=4, eos_id=2, bos_id=1)
best = generate(model, [[5, 6, 7]], config)[0][0]   # Hypothesis(tokens=[...], score=..., log_prob=...)
```

For serving, ``Scheduler`` batches many requests continuously (each with its own settings) in a background
thread, and ``TextStream`` turns token ids into text pieces as they come.
"""

from multihead.generation.api import generate, stream
from multihead.generation.beam import BeamSearch
from multihead.generation.config import GenerationConfig
from multihead.generation.greedy import TokenSearch
from multihead.generation.hypothesis import Hypothesis, Stopping
from multihead.generation.requests import Completion, RequestHandle
from multihead.generation.scheduler import Scheduler, SchedulerStats
from multihead.generation.state import DecodingState
from multihead.generation.text_stream import TextStream

__all__ = ["BeamSearch", "Completion", "DecodingState", "GenerationConfig", "Hypothesis", "RequestHandle", "Scheduler",
           "SchedulerStats", "Stopping", "TextStream", "TokenSearch", "generate", "stream"]
