"""The lab's concepts as question/answer pairs: what each phase, feature, TRI, the Loschmidt echo, replay drift and
discovery mean and which values to expect. Every answer is written from a page of docs/lab/ (its `source`), and
every number in it appears on that page (tests/test_grounding.py checks this), labelled as what the documentation
expects, never as a measurement of this conversation.

Each concept has training phrasings and held-out phrasings (the evaluation's `concepts` score), and the key facts
an answer must contain to count: a list of facts, each a tuple of accepted spellings. The training phrasings are
its own questions plus SUBJECT_TEMPLATES filled with the names people give it (SUBJECTS): a small model learns which
answer goes with which name only from many askings; a filled template equal to a held-out phrasing is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Concept:
    name: str
    source: str  # the page of docs/lab/ the answer is written from
    questions: tuple[str, ...]  # training phrasings
    held_out: tuple[str, ...]  # evaluation phrasings, never trained on
    answer: str
    facts: tuple[tuple[str, ...], ...]


CONCEPTS = (
    Concept(
        "phase names", "docs/lab/phases.md",
        ("Which lab phase is the ferromagnet?", "What do people call the four phases?", "Is the GHZ state a lab phase?",
         "Which phase is the paramagnet, and which the cluster state?", "What is the scrambled phase called in the lab?",
         # several names in one question: the answer lists all four (a one-phase answer names one)
         "What are the phase_type names of the ferromagnet, the SPT phase, the product state and the random circuit?",
         "Map the GHZ state, the cluster state, the paramagnet and the scrambled state to lab phases.",
         "Which lab phases are the ordered phase, the cluster phase, the trivial phase and the pseudorandom one?",
         "Which phase names does the lab use for the GHZ, cluster, paramagnetic and scrambled states?",
         "Give the phase_type of the ordered phase, the topological phase, the trivial phase and the random phase.",
         "How do the lab's phase_type values map to the usual names?", "What is the lab's name for the paramagnet?"),
        # Both ask for all four names: the key facts are the four phase_type values.
        ("Which phase_type is each of the cat state, the cluster state, the paramagnet and the scrambled state?",
         "What are the lab's names for the ordered, SPT, paramagnetic and random phases?"),
        "The lab's four phase_type names: ising_symmetry_breaking is the ferromagnet, the ordered phase, the GHZ or cat "
        "state; spt_cluster is the cluster state, the SPT phase; trivial_product is the paramagnet, the product "
        "state; pseudorandom is the scrambled state of a random circuit.",
        (("ising_symmetry_breaking",), ("spt_cluster",), ("trivial_product",), ("pseudorandom",)),
    ),
    Concept(
        "ising phase", "docs/lab/phases.md",
        ("What is the ising_symmetry_breaking phase?", "Explain the Ising symmetry-breaking phase of the lab.",
         "What state does the ordered (ferromagnet) phase prepare?", "Tell me about the GHZ-like phase in the lab.",
         "What kind of state is ising_symmetry_breaking?", "What do the shots of the ferromagnet phase look like?",
         "Which physics does the ordered phase model?", "Why is the ferromagnet's |m| near 1?",
         "What is the cat-state phase of the lab?", "How does the lab make the GHZ state?"),
        ("What does ising_symmetry_breaking simulate?", "Describe the lab's ordered phase."),
        "ising_symmetry_breaking is the ordered ferromagnet: a GHZ-like cat state √b|0…0> + √(1−b)|1…1>, made by "
        "tilting qubit 0 and copying it down the chain with CNOTs. Each shot collapses to all-up or all-down, so the "
        "Z2 symmetry breaks in every measurement: |m| and the long-range ZZ correlation are near 1, while the average "
        "magnetization just follows 2b − 1. Its fingerprint is correlation_length_norm.",
        (("cat", "ghz"), ("all-up", "all up", "ordered", "order"), ("zz", "correlation")),
    ),
    Concept(
        "cluster phase", "docs/lab/phases.md",
        ("What is the spt_cluster phase?", "Explain the SPT cluster state of the Jarvis lab.",
         "What makes the cluster phase topological?", "How is the cluster state prepared in the lab?",
         "What kind of order does the cluster state have?", "What is the SPT phase of the lab?",
         "How do I recognise the cluster phase?", "What does spt_cluster model?",
         "Why is the cluster state called topological?", "What hides the order of the cluster state?"),
        ("Describe the symmetry-protected topological phase of the lab.", "What is special about spt_cluster?"),
        "spt_cluster is the 1D cluster state, a symmetry-protected topological (SPT) phase: every qubit is tilted, "
        "then CZ acts on every neighbouring pair. Its order is hidden: the stabilizers Z X Z and the end-to-end "
        "string order are near 1, while every single-site or two-point Z measurement looks like fair coins. Only "
        "the string order and the stabilizers tell it apart from the trivial phase. Its fingerprint is "
        "stabilizer_mean.",
        (("string order",), ("stabilizer",), ("topolog", "spt")),
    ),
    Concept(
        "trivial phase", "docs/lab/phases.md",
        ("What is the trivial_product phase?", "Explain the trivial product (paramagnet) state.",
         "What does the paramagnetic phase look like in the lab?", "Tell me about the product-state phase.",
         "What kind of state is trivial_product?", "What does the product-state phase model?",
         "What do the features of the paramagnet look like?", "Why is the trivial phase called trivial?",
         "Which phase has no entanglement?"),
        ("Describe trivial_product.", "What is the lab's paramagnet?"),
        "trivial_product is the product state: every qubit is tilted on its own, with no gates between them "
        "(b = 0.5 gives the paramagnet |+>^N). It has zero entanglement and no correlations; its fingerprint is "
        "x_magnetization, ⟨X⟩ near 1.",
        (("product",), ("entanglement",), ("x_magnetization", "⟨x⟩", "<x>")),
    ),
    Concept(
        "pseudorandom phase", "docs/lab/phases.md",
        ("What is the pseudorandom phase?", "Explain the scrambled (random circuit) phase of the lab.",
         "What happens in a pseudorandom experiment?", "Tell me about the random brickwork circuits.",
         "What kind of state does the pseudorandom phase prepare?",
         "What do the features of a random-circuit run look like?",
         "Why is the entanglement of the scrambled phase high?", "What does the pseudorandom phase model?",
         "How does the random-circuit phase differ from the others?"),
        ("Describe the pseudorandom phase.", "What does a scrambled state look like in the lab?"),
        "pseudorandom scrambles the tilted product state with depth layers of Haar-random two-qubit gates in a "
        "brickwork. Every order parameter ends near 0, and the half-chain entanglement approaches the Page value "
        "N/2·ln 2 − 1/2 once the circuit is deep (depth of about 2N). It has no fingerprint of its own: "
        "stabilizer_mean, correlation_length_norm and x_magnetization all stay below 0.5.",
        (("random",), ("entanglement",), ("page",)),
    ),
    Concept(
        "bias", "docs/lab/phases.md",
        ("What does the bias parameter do?", "Explain bias in lab requests.", "What is b in the Jarvis lab?",
         "How does bias change the starting state?",
         "What does b control in an experiment?", "How does the bias parameter affect the state?",
         "What happens at bias 0.5?", "What is the bias of a run?", "Why does the magnetization follow the bias?"),
        ("What is the bias knob of an experiment?", "What does setting bias change?"),
        "bias b (0–1, default 0.5) sets the single-qubit state the circuit starts from, √b|0> + √(1−b)|1>: "
        "b = 0.5 is |+>, b = 1 is |0>, b = 0 is |1>. The starting magnetization is 2b − 1.",
        (("starting", "start"), ("magnetization", "|+>", "tilt")),
    ),
    Concept(
        "noise and depth", "docs/lab/phases.md",
        ("What does noise do in the lab?", "What are depth and noise in a lab request?",
         "Why do order parameters decay with depth?", "Explain the coherent errors of the lab.",
         "What does the noise setting change?", "What happens when I add more layers?",
         "How do errors build up with depth?", "What happens at noise 0?",
         "Why does a deeper circuit lose its order?", "What does depth mean in a lab request?"),
        ("How does the noise parameter affect an experiment?", "What happens as the circuit gets deeper?"),
        "Each of the depth layers ends with a small coherent error on every qubit, Rx·Rz with angles drawn from "
        "Normal(0, noise²) (default noise 0.05 rad). With noise 0 a structured phase stays exactly in its ideal "
        "state at any depth; with noise its order parameters slowly decay as the errors accumulate. Single-qubit "
        "errors cannot change entanglement.",
        (("error",), ("decay",), ("depth", "layer")),
    ),
    Concept(
        "features", "docs/lab/features.md",
        ("What features does the lab measure?", "List the lab's features.", "What is in feature_vector?",
         "Which ten numbers describe a run?",
         "Which numbers are in a run's feature vector?", "What does each feature of a run mean?",
         "What does the lab report for each run?", "Name the features in feature_names.",
         "What quantities does a phase experiment return?"),
        ("What are the ten features of a run?", "What does feature_vector contain?"),
        "Ten features, in the order of feature_names: magnetization, abs_magnetization, x_magnetization, "
        "zz_nearest, zz_long_range, correlation_length_norm, string_order, stabilizer_mean, entanglement_norm and "
        "randomness. All are computed from the state except magnetization, abs_magnetization and randomness, which "
        "come from the measurement shots; all are of order one.",
        (("string_order", "string order"), ("entanglement",), ("magnetization",)),
    ),
    Concept(
        "telling phases apart", "docs/lab/features.md",
        ("How do I tell the four phases apart?", "How does ben-lab identify a phase from its features?",
         "Which feature is each phase's fingerprint?", "What rule identifies the phase of a run?",
         "How do you read the phase off a run's features?", "Which features decide the phase?",
         "How is a run's phase decided from its features?", "What threshold tells the phases apart?",
         "How would I classify a run by hand?"),
        ("Given a feature vector, how do you find the phase?", "What are the fingerprints of the phases?"),
        "Check the fingerprints in order, each as feature > 0.5: stabilizer_mean → spt_cluster, "
        "correlation_length_norm → ising_symmetry_breaking, x_magnetization → trivial_product; if none is above "
        "0.5, the run is pseudorandom.",
        (("stabilizer",), ("correlation_length", "correlation length"), ("x_magnetization",), ("0.5",)),
    ),
    Concept(
        "string order", "docs/lab/features.md",
        ("What is string_order?", "What does the string order measure?", "Why does string order matter?",
         "Explain stabilizer_mean and string_order.",
         "What does a string order near 1 mean?", "Which feature shows the cluster state's hidden order?",
         "How is the string order measured?", "What does stabilizer_mean measure?",
         "Where does the string order come from?", "What does a string order near 0 tell me?"),
        ("What is the string order parameter?", "Which phase has a large string order?"),
        "string_order is ⟨K_1 K_2 … K_N−2⟩, the product of the cluster stabilizers K_i = Z_i−1 X_i Z_i+1; "
        "stabilizer_mean is their mean. Both are near 1 for the SPT cluster phase and near 0 for the others: "
        "stabilizer_mean is the SPT phase's fingerprint.",
        (("stabilizer",), ("cluster", "spt")),
    ),
    Concept(
        "entanglement", "docs/lab/features.md",
        ("What is entanglement_norm?", "What does the entanglement feature measure?",
         "How is half-chain entanglement reported?", "What is the Page value?",
         "What does the half-chain entanglement measure?", "How is the entanglement normalised?",
         "Which phase has the most entanglement?", "What is the entanglement of a product state?",
         "What entanglement should I expect for a random state?"),
        ("What does entanglement_norm tell me?", "Explain the entanglement numbers of a run."),
        "entanglement_norm is the half-chain von Neumann entropy divided by the Page value, the entropy of a "
        "Haar-random state; the summary also gives entanglement_entropy and page_entropy in nats. The trivial "
        "phase has 0, the ising and cluster states ln 2 (one Bell pair across the cut), and pseudorandom circuits "
        "approach 1 when deep.",
        (("page",), ("entropy",), ("half", "cut")),
    ),
    Concept(
        "TRI", "docs/lab/tri.md",
        ("What is TRI?", "What does time-reversal instability measure?", "Explain the tri endpoint.",
         "What TRI should I expect for each phase?",
         "What goes into the TRI number?", "What are the two runs of a TRI test?", "What is the formula behind TRI?",
         "What TRI does a symmetric circuit give?", "What does a TRI near 0 mean?"),
        ("What does the TRI of a run tell me?", "How is the time-reversal instability computed?"),
        "TRI (time-reversal instability) runs the same circuit at bias b and at the mirrored bias 1 − b and is the "
        "L2 distance between the two feature vectors. The ising, cluster and trivial circuits respect the spin "
        "flip, so TRI ≈ 2·|2b − 1| (about 0.8 at b = 0.7): the state remembers its initial tilt. A pseudorandom "
        "circuit scrambles the tilt away, so TRI is expected to be small (about 0.08). At b = 0.5 TRI = 0.",
        (("1 − b", "1-b", "mirror"), ("distance",), ("2·|2b − 1|", "2|2b-1|", "2|2b − 1|", "spin flip", "spin-flip")),
    ),
    Concept(
        "Loschmidt echo", "docs/lab/tri.md",
        ("What is the Loschmidt echo?", "What does loschmidt_echo mean?", "Why is the ising echo low?",
         "Explain the echo in a TRI result.",
         "What does the echo of a TRI run tell me?", "Why is the echo of the cat state so low?",
         "How is the Loschmidt echo measured?", "What does an echo near 1 mean?",
         "Which phase comes back best after a reversed run?"),
        ("What does the loschmidt_echo field measure?", "How reversible is each phase?"),
        "loschmidt_echo runs the circuit forward, then its exact inverse with a small kick on every qubit, and "
        "measures the probability of getting back to |0…0>; 1 means perfectly reversible. The ising cat state is "
        "the most fragile, because its two branches feel the kicks N times harder; cluster and trivial decay slowly, "
        "and pseudorandom circuits stay closest to 1 because the kicks add up incoherently.",
        (("reverse", "inverse", "revers"), ("probability", "back to"), ("kick", "perturb")),
    ),
    Concept(
        "replay drift", "docs/lab/replay_drift.md",
        ("What does replay drift measure?", "Explain the replay_drift endpoint.",
         "What do Grows, Saturates and Flat mean?", "What is drift_trend?",
         "What does a replay-drift sweep do?", "How does the lab decide Grows, Saturates or Flat?",
         "What does drift_trend tell me?", "What is the drift between two depths?", "When is a drift sweep Flat?"),
        ("What is replay drift in the lab?", "How is a replay-drift sweep classified?"),
        "replay_drift runs one phase at the same seed at depths base_depth × factor; a deeper run replays the "
        "shallower circuit and keeps going. Each run's drift is the L2 distance of its features to the first run's. "
        "flat: no run drifted 0.02 or more (any structured phase with noise 0); saturates: the drift levelled off "
        "(typical of pseudorandom once scrambled); grows: it keeps increasing (structured phases with noise).",
        (("depth",), ("distance",), ("flat",), ("saturat",), ("grow",)),
    ),
    Concept(
        "discovery", "docs/lab/discovery.md",
        ("What does discovery do?", "Explain the discovery endpoint.", "What are purity and ARI?",
         "How does the lab cluster phases without labels?",
         "How does the discovery endpoint group runs?", "What does a purity of 1 mean?",
         "What is the adjusted Rand index?", "What does discovery tell me about the phases?",
         "What does the ARI of a discovery run measure?"),
        ("What is unsupervised discovery in the lab?", "What do purity and adjusted_rand_index mean?"),
        "discovery runs num_per_phase experiments of each listed phase and clusters their feature vectors with "
        "k-means (k defaults to the number of phases). purity is the fraction of runs in a cluster whose majority "
        "is their own phase; adjusted_rand_index compares clusters with the true phases, 1 = perfect, 0 = chance. "
        "The four phases separate perfectly with the defaults; clusters mix when k is smaller than the number of "
        "phases or noise wipes out a fingerprint.",
        (("k-means", "kmeans", "cluster"), ("purity",), ("rand",)),
    ),
    Concept(
        "limits", "docs/lab/README.md",
        ("What are the lab's limits?", "How many qubits can the lab simulate?", "What is the largest system size?",
         "Why was my request refused with 422?",
         "What is the biggest experiment the lab can run?", "How deep can a circuit be at 20 qubits?",
         "What is the largest system_size I can ask for?", "Why does the lab refuse large requests?",
         "How many qubits and layers can I request?"),
        ("What system sizes and depths does the lab accept?", "What is the maximum number of qubits?"),
        "The lab keeps every amplitude of an exact state vector, so system_size is 4–20 and depth 1–64, with "
        "depth × 2^system_size ≤ 8,388,608 (at 20 qubits, depth ≤ 8). A request outside these gets HTTP 422 with "
        "the limit in the message.",
        (("20",), ("422", "limit")),
    ),
)


# The names a concept is asked about by, for SUBJECT_TEMPLATES.
SUBJECTS = {
    "phase names": ("the names of the lab's phases", "the lab's phase_type names", "the four phase_type values"),
    "ising phase": ("ising_symmetry_breaking", "the Ising symmetry-breaking phase", "the ferromagnet phase",
                    "the GHZ cat state of the lab"),
    "cluster phase": ("spt_cluster", "the cluster state", "the SPT phase", "the SPT cluster phase"),
    "trivial phase": ("trivial_product", "the product-state phase", "the paramagnet phase", "the trivial phase"),
    "pseudorandom phase": ("pseudorandom", "the random-circuit phase", "the scrambled phase"),
    "bias": ("the bias parameter", "bias", "the starting tilt b"),
    "noise and depth": ("noise and depth", "the noise parameter", "circuit depth"),
    "features": ("the lab's features", "feature_vector", "the feature names"),
    "telling phases apart": ("the phase fingerprints", "identifying a phase from its features"),
    "string order": ("string_order", "the string order", "stabilizer_mean"),
    "entanglement": ("entanglement_norm", "the half-chain entanglement", "the Page value"),
    "TRI": ("TRI", "the time-reversal instability", "the /tri endpoint"),
    "Loschmidt echo": ("loschmidt_echo", "the Loschmidt echo", "the echo of a TRI run"),
    "replay drift": ("replay drift", "drift_trend", "the /replay_drift endpoint"),
    "discovery": ("discovery", "purity and ARI", "the /discovery endpoint"),
    "limits": ("the lab's limits", "the system-size limit", "the largest experiment the lab runs"),
}
SUBJECT_TEMPLATES = ("Explain {s}.", "Tell me about {s}.", "What should I know about {s}?",
                     "Give me a short explanation of {s}.", "Can you explain {s} to me?", "{s}: what is it about?",
                     "Describe {s}.", "What is special about {s}?", "What does {s} mean?", "How does {s} work?",
                     "What is {s} in the lab?", "What does {s} tell me?")
# What each phase is, in one sentence with its key facts (docs/lab/phases.md): said whenever a phase is named, so a
# question about a phase by any of its names gets what the phase is, not only its phase_type.
PHASE_SUMMARIES = {
    "ising_symmetry_breaking": "the ordered ferromagnet, a GHZ-like cat state: each shot is all-up or all-down, and "
                               "the long-range ZZ correlation is near 1; its fingerprint is "
                               "correlation_length_norm > 0.5",
    "spt_cluster": "the cluster state, a symmetry-protected topological (SPT) phase: its hidden order shows only in "
                   "the string order and the stabilizers Z X Z, both near 1; its fingerprint is "
                   "stabilizer_mean > 0.5",
    "trivial_product": "the product state, every qubit tilted on its own: zero entanglement, no correlations, and "
                       "x_magnetization ⟨X⟩ near 1; its fingerprint is x_magnetization > 0.5",
    "pseudorandom": "the scrambled state of Haar-random brickwork circuits: order parameters near 0 and half-chain "
                    "entanglement approaching the Page value; it has no fingerprint of its own (none of the three is "
                    "above 0.5)",
}


def normalized(question: str) -> str:
    return " ".join(re.findall(r"[a-z0-9_]+", question.lower()))


def training_questions(concept: Concept, per_subject: int = 5) -> list[str]:
    """The concept's own training questions, then `per_subject` templates for each of its names, the templates
    rotating across names and concepts (none equal to a held-out phrasing, none repeated)."""
    seen = {normalized(q) for q in concept.held_out}
    start = 5 * [c.name for c in CONCEPTS].index(concept.name)  # each concept starts elsewhere in the templates
    filled = [SUBJECT_TEMPLATES[(start + i * per_subject + j) % len(SUBJECT_TEMPLATES)].format(s=subject)
              for i, subject in enumerate(SUBJECTS[concept.name]) for j in range(per_subject)]
    asked = []
    for question in concept.questions + tuple(filled):
        if question.startswith("the "):
            question = "The" + question[3:]
        if normalized(question) not in seen:
            seen.add(normalized(question))
            asked.append(question)
    return asked
