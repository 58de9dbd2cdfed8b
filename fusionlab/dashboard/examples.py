"""Hand-written example inputs per task, for the Playground and Mechanics buttons (the bottom layer: no
Streamlit, no model)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A hand-written input for a task: one text, or a pair for pair tasks."""

    text: str
    pair: str | None = None

    @property
    def label(self) -> str:
        """Short button caption."""
        return self.text if len(self.text) <= 48 else self.text[:45] + "…"


EXAMPLES: dict[str, tuple[Example, ...]] = {
    "sst2": (
        Example("This movie is absolutely fantastic!"),  # the original notebook's sentence
        Example("A warm, funny little film that never overstays its welcome."),
        Example("The plot drags and the jokes land with a thud."),
        Example("I expected to be bored, but the last act won me over."),
    ),
    "imdb": (
        Example("This movie is absolutely fantastic!"),  # the original notebook's sentence
        Example("The cast clearly had fun, and so did I: sharp writing, great pacing, a lovely score."),
        Example("Two hours I will never get back. Wooden acting and a script full of holes."),
    ),
    "cola": (
        Example("The children played in the garden all afternoon."),
        Example("Garden the in afternoon played children all the."),
        Example("She seems that he left early."),
    ),
    "mnli": (
        Example("A man is repairing a bicycle in his garage.", "Someone is fixing a bike."),
        Example("The museum is closed on Mondays.", "You can visit the museum every day of the week."),
        Example("The team won the match in overtime.", "The stadium was full."),
    ),
    "sick": (
        Example("A dog is running across a sandy beach.", "An animal is moving on the sand."),
        Example("A woman is slicing an onion.", "Nobody is cutting a vegetable."),
    ),
    "cb": (
        Example("I doubt that the shop will still be open when we get there.", "The shop will be open."),
        Example("She told me that the train had already left.", "The train had left."),
    ),
    "rte": (
        Example(
            "The new bridge, opened in March, links the two halves of the town across the river.",
            "The town has a new bridge.",
        ),
        Example("Maria sold her old car and now cycles to work every day.", "Maria drives to work."),
        Example("The company reported record profits for the third year running.", "The company is losing money."),
    ),
    "mrpc": (
        Example(
            "The council approved the new budget on Tuesday evening.",
            "On Tuesday night the council passed the new budget.",
        ),
        Example("The factory will close next year.", "The factory hired two hundred new workers."),
    ),
    "qnli": (
        Example("When was the bridge opened?", "The bridge was opened to traffic in the spring of 1932."),
        Example("Who designed the tower?", "The tower is painted every seven years."),
    ),
    "boolq": (
        Example(
            "is a tomato a fruit",
            "Botanically, a tomato is a fruit because it develops from the flower and contains seeds.",
        ),
        Example(
            "can penguins fly",
            "Penguins are flightless seabirds; their wings have evolved into flippers for swimming.",
        ),
    ),
}


def examples_for(task: str) -> tuple[Example, ...]:
    """The built-in examples of ``task`` (none for a user's own task)."""
    return EXAMPLES.get(task, ())


TEXT_MAX_CHARS = 5000
"""A long movie review fits (IMDb's median is about 1,000 characters); the text box states the limit, and the
answer says when the model's ``max_length`` cut the text, which happens far earlier."""
