from typing import Any

class Device:
    id: int
    platform: str
    device_kind: str
    process_index: int

def __getattr__(name: str) -> Any: ...
