"""The task kinds, in one place: kind → task class (and through it, model class and data mode).

A checkpoint records its task's ``kind``; an exported directory records its model class in
``config.json``'s ``architectures``. Everything that needs to know what a checkpoint is, or
which class trains what, asks here.
"""

from __future__ import annotations

from unispeech.tasks.base import SpeechTask
from unispeech.tasks.classification import ClassificationTask
from unispeech.tasks.ctc_finetuning import CTCFinetuningTask
from unispeech.tasks.pretraining import PretrainingTask

TASKS: dict[str, type[SpeechTask]] = {
    task.kind: task for task in (PretrainingTask, CTCFinetuningTask, ClassificationTask)
}


def task_for_kind(kind: str) -> type[SpeechTask]:
    if kind not in TASKS:
        raise ValueError(f"unknown task kind {kind!r}: one of {sorted(TASKS)}")
    return TASKS[kind]


def task_for_architecture(architecture: str) -> type[SpeechTask]:
    """The task that trains a model class named in ``config.json`` (``UniSpeechForCTC``, ...)."""
    for task in TASKS.values():
        if task.model_class.__name__ == architecture:
            return task
    raise ValueError(f"no task trains {architecture!r}: one of {[t.model_class.__name__ for t in TASKS.values()]}")
