"""The tour of the tutorial: a lesson for each of its steps, each a link that sets the dashboard up.

Plain data, so the Lessons page draws it and the tests open every link. A lesson's settings are checked
by core/links.py like any other link: a lesson cannot hold a value the Train page would drop.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from urllib.parse import urlencode

from core.classroom import Challenge, board_of
from core.config import preset_values
from core.links import class_query, dataset_values, link_query


@dataclass(frozen=True)
class LessonLink:
    label: str
    page: str  # the page's URL path: train, data, network, speed, own
    settings: dict = field(default_factory=dict)
    locked: frozenset = frozenset()
    school: dict = field(default_factory=dict)  # the lesson's number and its challenge (a Train link's)

    def query(self) -> dict[str, str]:
        if self.page in ("train", "step"):  # the Train page's names, checked and locked alike
            return {**link_query(self.settings, self.locked), **class_query(self.school, name=False)}
        return {k: str(v) for k, v in self.settings.items()}

    def board(self) -> str | None:
        """The class board a Train link's runs gather on (core/classroom.py), else None."""
        if self.page != "train":
            return None
        return board_of(self.school.get("lesson"), self.school.get("challenge"))

    def _with(self, challenge: Challenge) -> "LessonLink":
        return dataclasses.replace(self, school={**self.school, "challenge": challenge})

    def url(self) -> str:
        """The link's path and query, e.g. 'train?dataset=shapes&lr=0.01&lock=lr'."""
        query = self.query()
        return self.page + ("?" + urlencode(query, safe=",:/") if query else "")


@dataclass(frozen=True)
class Lesson:
    title: str
    text: str  # a few sentences a student understands (markdown)
    links: tuple[LessonLink, ...]
    look_at: str
    question: str


def lesson_boards(dataset: str = "cifar10") -> list[str]:
    """Every class board the lessons' links lead to, in the lessons' order."""
    return list(dict.fromkeys(link.board() for lesson in lessons(dataset) for link in lesson.links if link.board()))


def lessons(dataset: str = "cifar10", gpu: bool = True, classes: int = 10) -> list[Lesson]:
    """The lessons in the tutorial's order, on `dataset` (cifar10; shapes where CIFAR-10 cannot be had; or the
    teacher's image folder, folder:PATH, of `classes` classes); on a machine without a GPU (gpu=False) the
    CPU-against-GPU lesson asks what this machine can answer."""
    d = Data(dataset, classes if dataset.startswith(("folder:", "own:")) else 10)
    tour = [*_first_steps(d), _inside_a_step(d), *_knobs(d), _overfitting(d), *_devices(d, gpu), _challenges(d)]
    return [dataclasses.replace(lesson, title=f"{i}. {lesson.title}", links=tuple(_of_lesson(link, i)
                                                                                  for link in lesson.links))
            for i, lesson in enumerate(tour, 1)]


def _of_lesson(link: LessonLink, number: int) -> LessonLink:
    """A Train link says which lesson it belongs to, so the class board gathers its runs (core/classroom.py)."""
    if link.page != "train":
        return link
    return dataclasses.replace(link, school={"lesson": number, **link.school})


@dataclass(frozen=True)
class Data:
    """The dataset the lessons run on, as their words need it."""

    name: str  # cifar10, shapes, folder:PATH or own:NAME
    classes: int = 10

    @property
    def settings(self) -> dict[str, str]:
        return dataset_values(self.name)

    @property
    def own(self) -> bool:
        """An own dataset (core/datasets.py): a few dozen pictures a class."""
        return self.name.startswith("own:")

    @property
    def guess_loss(self) -> str:
        """The loss of a guess spread evenly over the classes: "ln(10) = 2.30"."""
        return f"ln({self.classes}) = {math.log(self.classes):.2f}"

    @property
    def chance(self) -> str:
        return f"{1 / self.classes:.0%}"

    def about(self) -> str:
        """What the pictures are, for the first lesson."""
        if self.name == "cifar10":
            return ("50,000 small colour photos in 10 classes (planes, cars, birds, cats, deer, dogs, frogs, horses, "
                    "ships, trucks), and 10,000 more kept apart to test on. Each picture is")
        if self.name == "shapes":
            return ("10,000 drawn shapes in 10 classes, made on this machine (the offline stand-in for CIFAR-10's "
                    "50,000 photos), and 2,000 more kept apart to test on. Each picture is")
        if self.name.startswith("own:"):
            return (f"your own pictures, the dataset {self.name[len('own:'):]} ({self.classes} classes) made on the "
                    "Own pictures page: a fifth of each class kept apart to test on, the rest to learn from. Each "
                    "picture becomes")
        return (f"the pictures in your folder `{self.name[len('folder:'):]}`: its train/ sub-folder to learn from, "
                f"its test/ sub-folder kept apart to test on, one folder per class ({self.classes} classes). Each "
                "picture becomes")


def _train_link(d: Data, label: str, locked: set[str], **changes) -> LessonLink:
    """A Train link that names every knob: the tutorial's settings with `changes` (a folder is locked with the
    dataset)."""
    knobs = preset_values("tutorial")
    preset = "tutorial" if all(knobs.get(k, v) == v for k, v in changes.items()) else "custom"
    if "dataset" in locked:
        locked = {*locked, *({"folder", "own"} & set(d.settings))}
    return LessonLink(label, "train", dict(**d.settings, preset=preset, **{**knobs, **changes}), frozenset(locked))


def _first_steps(d: Data) -> list[Lesson]:
    """The data, the network's shapes, and training as the tutorial does."""
    return [
        Lesson(
            "The data",
            f"The network learns from labelled pictures: {d.about()} 3 channels (red, green, blue) of "
            "32x32 pixels, each pixel a number from 0 to 255. The tutorial first scales these to 0..1 and "
            "then *normalizes* them to -1..1, centred on 0, which makes SGD's job easier.",
            (LessonLink("Open the Data page", "data", d.settings),),
            "the images per class (are the classes balanced?) and the two histograms: the same pixels before "
            "and after normalization.",
            "A pixel has the value 191 (of 255). What is it after ToTensor, and after Normalize((0.5,), (0.5,))?",
        ),
        Lesson(
            "The network's shapes",
            "A 32x32 image goes through conv1 (5x5 filters: 32 - 5 + 1 = **28**), a 2x2 max-pool (**14**), "
            "conv2 (14 - 5 + 1 = **10**), another pool (**5**). conv2 has 16 output channels, so fc1 gets "
            "16 · 5 · 5 = **400** numbers. *Conv width* is how many filters conv1 has (the tutorial's 6).",
            (LessonLink("Open the Network page at width 6", "network", dict(conv_width=6, conv2_width=16)),
             LessonLink("... and at width 12", "network", dict(conv_width=12, conv2_width=16))),
            "the Output shape column and the Parameters column, for width 6 and then 12.",
            "Doubling conv width from 6 to 12: which layers' parameters change, and which stay the same? Why?",
        ),
        Lesson(
            "Train it the tutorial's way",
            "The tutorial's loop: take 4 images, compute the cross-entropy loss of the network's guesses, "
            "backpropagate, and let SGD (learning rate 0.001, momentum 0.9) nudge every weight. It prints the "
            "*running loss*, the average loss of the last batches: watch it fall. A guess spread evenly over "
            f"{d.classes} classes has a loss of {d.guess_loss}.",
            (_train_link(d, "Train with the tutorial's settings", {"dataset", "preset", "lr", "momentum", "batch_size",
                                                            "conv_width", "conv2_width", "epochs"}),),
            f"the Running loss chart (how soon does it leave {d.guess_loss.split(' = ')[1]}?) and the test accuracy "
            "after each epoch.",
            f"After 2 epochs, is the network better than guessing ({d.chance})? By how much?",
        ),
    ]


def _inside_a_step(d: Data) -> Lesson:
    """What one step of the loop does to one weight, with the numbers in (the Step page)."""
    return Lesson(
        "Inside one step",
        "Each step of the loop does four things: `optimizer.zero_grad()` clears the gradients (they add up "
        "otherwise), the **forward** pass scores the batch's images and the loss says how wrong the scores are, "
        "`loss.backward()` gives every weight its **gradient** g (how much the loss would rise if the weight rose "
        "a little), and `optimizer.step()` moves every weight **against** its gradient. For SGD with momentum: "
        "buf = μ·buf + g, then w_new = w − lr·buf. The Step page takes one step on one batch, shows each stage "
        "with PyTorch's own numbers, and checks the rule written out against `optimizer.step()`.",
        (LessonLink("Take one step with the tutorial's settings", "step",
                    dict(**d.settings, lr=0.001, momentum=0.9, batch_size=4), frozenset({"lr"})),),
        "the Update tab: w, g, buf and w_new of one weight; press Take the step and watch buf build up; then the "
        "Effect tab: the batch's loss for a much smaller and a much larger step than the learning rate.",
        "The gradient of this weight is −0.02 and lr is 0.001: which way does the weight move, and by how much?",
    )


def _knobs(d: Data) -> list[Lesson]:
    """What each knob does: learning rate, momentum, the optimizer."""
    return [
        Lesson(
            "The learning rate",
            "The learning rate is the size of SGD's step. Too high and the steps overshoot: the loss jumps "
            "up instead of down and *diverges* (the weights blow up), or every ReLU ends up outputting 0 "
            "and the network guesses one class. Too low and the weights barely move: after an epoch the "
            f"loss is still near {d.guess_loss.split(' = ')[1]}.",
            (_train_link(d, "Too high: learning rate 10", {"lr", "epochs"}, lr=10.0, epochs=1),
             _train_link(d, "Too low: learning rate 0.0001", {"lr", "epochs"}, lr=0.0001, epochs=1),
             _train_link(d, "About right: 0.001", {"lr", "epochs"}, lr=0.001, epochs=1)),
            "what the page says when the loss explodes, and how far the loss falls in one epoch at each rate: on the "
            "Runs page, choose the runs under Compare runs to see their losses on one chart.",
            "Which rate would you choose, and why not the largest one that does not diverge?",
        ),
        Lesson(
            "Momentum",
            "Momentum makes SGD keep part of its last step, like a ball rolling downhill: small, noisy "
            "gradients add up to steady progress. The tutorial uses 0.9 (keep 90% of the last step).",
            (_train_link(d, "Momentum 0", {"momentum", "lr", "epochs"}, momentum=0.0, epochs=1),
             _train_link(d, "Momentum 0.9", {"momentum", "lr", "epochs"}, momentum=0.9, epochs=1),
             LessonLink("Compare them on the Runs page", "runs")),
            "the running loss after one epoch with each: on the Runs page, choose both under Compare runs (the "
            "legend names them by their momentum).",
            "With momentum 0, what would you have to change to learn as fast as with 0.9?",
        ),
        Lesson(
            "Optimizers",
            "The tutorial names other update rules than SGD. *Adam* keeps two running averages for every weight: "
            "m, of its gradient (like momentum), and v, of its gradient squared, and moves each weight by "
            "m / √v: about lr each step, whether its gradient is large or tiny. Train one epoch with each, then "
            "compare them.",
            (_train_link(d, "SGD without momentum (lr 0.01)", {"optimizer", "lr", "momentum", "epochs"}, lr=0.01,
                         momentum=0.0, epochs=1),
             _train_link(d, "SGD with momentum 0.9 (the tutorial)", {"optimizer", "lr", "momentum", "epochs"},
                         epochs=1),
             _train_link(d, "Adam (lr 0.001)", {"optimizer", "lr", "epochs"}, optimizer="adam", epochs=1),
             LessonLink("Compare them on the Runs page", "runs")),
            "the loss curves side by side on the Runs page (choose the three under Compare runs: the legend names "
            "each by its optimizer), and each one's test accuracy.",
            "Which one's loss falls soonest? Why would dividing by √v help a weight whose gradient is always tiny?",
        ),
    ]


def _overfitting(d: Data) -> Lesson:
    """Few pictures, many epochs: train and test accuracy part; flips and crops close the gap."""
    # an own dataset has a few dozen pictures a class: all of them, many times over
    overfit = {**OVERFIT, "train_images": 0} if d.own else OVERFIT
    overfit_what = "all your pictures" if d.own else f"{OVERFIT['train_images']} images"
    overfit_text = "all your pictures" if d.own else f"only {OVERFIT['train_images']} training images"
    return Lesson(
        "Overfitting",
        "Trained for long enough on too few pictures, a network starts to *memorize* its training images "
        "instead of learning what a class looks like. Its accuracy on the training images keeps climbing while "
        f"its accuracy on test images it has never seen stalls or falls. The first link trains on "
        f"{overfit_text}, {overfit['epochs']} times over (about a minute); the accuracy "
        "chart shows both lines. The second trains the same with the standard fix: every batch's pictures "
        "randomly flipped left-right and shifted a few pixels (*flips and crops*), so the network never sees "
        "quite the same picture twice. "
        + ("A few dozen pictures a class, as here, is where memorizing shows most." if d.own else
           "Your own pictures overfit too: make a dataset of about 20 pictures a class on the Own pictures "
           "page, choose it at the top of this page, and these links train on it."),
        (_train_link(d, f"Train on {overfit_what} for {overfit['epochs']} epochs",
                     {"epochs", "train_images", "augment"}, **overfit),
         _train_link(d, "The same, with flips and crops", {"epochs", "train_images", "augment"}, **overfit,
                     augment=True),
         LessonLink("Make your own dataset", "own", {"own": d.name[len("own:"):]} if d.own else {})),
        "the gap between the train line and the test line, epoch by epoch; then how much flips and crops close "
        "it (the Runs page draws both runs' accuracy together).",
        "From which epoch on does more training stop helping on the test set? Why would flipped and shifted "
        "pictures help the test accuracy but slow the train accuracy?",
    )


# The overfitting lesson's run: few images, many epochs, a learning rate that memorizes them. Train and test accuracy
# part by 20 points or more within its 30 epochs on Shapes (seeds 0-2) and on the CIFAR-10 folder (docs/benchmarks.md)
OVERFIT = dict(train_images=500, epochs=30, lr=0.01, batch_size=8)


def _devices(d: Data, gpu: bool = True) -> list[Lesson]:
    """Where it trains: a wider network on a GPU, then several processes (data parallelism)."""
    return [
        Lesson(
            "Widen the network: CPU against GPU",
            "The tutorial's exercise: make the network wider and see whether a GPU helps. A tiny network does "
            "so little work per image that a GPU spends its time waiting; as conv width grows, the work "
            "grows and the GPU pulls ahead. On a machine without a GPU the Speed page compares thread counts "
            "and shows what a GPU would change.",
            (LessonLink("Open the Speed page", "speed"),),
            "images/s against conv width for each device, and where the lines cross." if gpu else
            "this machine has no GPU: the Speed page's sweep of images/s against conv width for 1 thread and for "
            "all threads, and its note on what a GPU would change (each layer one kernel launch, whatever its "
            "size).",
            "At which width does the faster device win here? Why does a wider network favour the GPU?" if gpu else
            "Here: from which width do all threads beat one thread? With a GPU, why would a wider network favour "
            "it?",
        ),
        Lesson(
            "Several processes: data parallelism",
            "The tutorial ends by pointing at more than one GPU. *Data parallelism* trains a copy of the network "
            "in each process (or GPU): every step each copy takes its own share of the batch and computes its "
            "gradients, then the copies **average their gradients** (PyTorch's DistributedDataParallel does it "
            "during backward), so every copy takes the same step and they stay identical. The batch size is per "
            "process: 2 processes at batch 16 take 32 images a step, the *global batch*. The averaging is "
            "communication, and on a network this small it costs a large share of each step.",
            (_train_link(d, "Train on 2 processes (DDP)", {"device", "nproc"}, device="cpu", nproc=2,
                         batch_size=16, lr=0.01, epochs=1),
             LessonLink("Measure the scaling on the Speed page", "speed")),
            "the status line (2 processes × batch 16 = global batch 32) and Images/s; then, on the Speed page, "
            "images/s and efficiency for 1 and 2 processes at widths 6 and 64.",
            "Two processes of one thread each, or one process with two threads on the same cores: which trains "
            "faster here, and why?",
        ),
    ]


# The challenges' goals on each dataset: the tutorial's own loop reaches about 54% on CIFAR-10 after its 2 epochs
# (core/loop.py's TUTORIAL_ACCURACY) and about 70% on Shapes after 1; docs/benchmarks.md has the runs that reach them.
CHALLENGES = {
    "cifar10": (Challenge(accuracy=0.55, epochs_max=1), Challenge(accuracy=0.55)),
    "shapes": (Challenge(accuracy=0.75, epochs_max=1), Challenge(accuracy=0.8)),
}


def _challenges(d: Data) -> Lesson:
    """Two class challenges: the class's answers gather on the Board page, ranked."""
    if d.name not in CHALLENGES:  # a teacher's folder: no goal is known, so the board ranks by accuracy
        return Lesson(
            "Class challenges",
            "A question for the whole class at once. Everyone opens the same link, types their name beside Train, "
            "chooses their own settings and trains; the **Board** page (on the projector) shows every run live, "
            "best first. On your own pictures no goal is known yet: the first runs set it.",
            (_train_link(d, "Best test accuracy in one epoch", {"dataset", "epochs"}, epochs=1),),
            "the Board page: which settings reached the best test accuracy.",
            "Which knob did the best runs change most? Would the same settings win with a different seed?",
        )
    beat, fastest = CHALLENGES[d.name]
    tutorial = "54% after 2 epochs" if d.name == "cifar10" else "about 70% after 1 epoch"
    return Lesson(
        "Class challenges",
        "A question for the whole class at once. Everyone opens the same link, types their name beside Train, "
        "chooses their own settings and trains; the **Board** page (on the projector) shows every run live, "
        f"best first, and counts who passed. The tutorial's own settings reach {tutorial}: beat them.",
        (_train_link(d, f"Beat the tutorial: {beat.text()}", {"dataset", "epochs"}, epochs=1)._with(beat),
         _train_link(d, f"Fastest: {fastest.text()}, in as few seconds as you can", {"dataset"})._with(fastest)),
        "the Board page: which settings passed, and how long each run took (the passed runs rank fastest first).",
        "Which knob did the runs that passed change most? Would the same settings win with a different seed?",
    )
