"""swestar's dataset builder for torchtune (copied next to the config by
the sft stage and put on PYTHONPATH when it launches).

The dataset is JSON Lines of OpenAI-style chats, {"messages": [{"role",
"content", "train"}]}. torchtune's own chat_dataset trains on every
assistant message; a long trajectory cut into segments repeats earlier
assistant turns as context, so only the messages marked "train" may carry
loss. This transform keeps torchtune's behaviour otherwise: system and
user messages are masked.
"""

from typing import Any, Mapping

from torchtune.data import Message
from torchtune.datasets import SFTDataset
from torchtune.modules.transforms import Transform


class SwestarToMessages(Transform):
    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        messages = [
            Message(
                role=m["role"],
                content=m["content"],
                masked=not (m["role"] == "assistant" and m.get("train", True)),
            )
            for m in sample["messages"]
        ]
        return {"messages": messages}


def swestar_chat_dataset(tokenizer, *, data_files: str, packed: bool = False, split: str = "train") -> SFTDataset:
    if packed:
        raise ValueError("packed datasets are not supported: samples are already cut to the window")
    return SFTDataset(
        source="json",
        data_files=data_files,
        split=split,
        message_transform=SwestarToMessages(),
        model_transform=tokenizer,
    )
