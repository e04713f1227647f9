"""Chat with a chat-tuned language model: ``ChatSession`` keeps the conversation and the cache between turns.

```python
from multihead.chat import ChatSession
session = ChatSession(model, tokenizer, render=template, stop_token_ids=[end_of_turn], system="Be brief.")
for piece in session.stream("What is the capital of France?"):
    print(piece, end="", flush=True)
session.save("chat.json")
```
"""

from multihead.chat.session import ChatSession, Message, Render, TurnStats

__all__ = ["ChatSession", "Message", "Render", "TurnStats"]
