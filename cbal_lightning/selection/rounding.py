"""Integer selections for Eq. 9 without a MILP: LP rounding, a balanced greedy, exact swap moves and their iteration.

Every routine here works on the float objective ``sum z_i cost_i + lam ||Omega - P^T z||_1`` (Eq. 9), checks
a deadline (``time.perf_counter`` value) between steps and never copies ``probs`` whole.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import cKDTree

from cbal_lightning.selection.lp import smallest

__all__ = ["objective", "lp_rounding", "balanced_greedy", "swap_search", "perturbed_search"]

_TERMS = 4_000_000  # (out, in, class) terms per chunk of swap evaluation
_NEAR_PER_BLOCK = 20  # best swaps kept per evaluated block as candidates for the double moves
PAIR_MAX_CLASSES = 10  # complementary pairs (k-d tree queries) only up to this many classes
_PAIR_EPS = 1.0  # approximate neighbours (within 2x the nearest distance): 70-140x faster on real posteriors
_PAIR_SECONDS = 5e-6  # k-d tree query time per swap and neighbour, with margin (measured 0.07-1.8 us, C <= 10)


def objective(cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, lam: float, rows: np.ndarray) -> float:
    """Float objective of Eq. 9 for the selected ``rows``: ``sum cost_i + lam ||Omega - P^T z||_1``.

    Example:
        >>> objective(np.array([-0.5, -0.1]), np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([1.0, 1.0]), 1.0, np.array([0]))
        0.5
    """
    return float(cost[rows].sum()) + lam * float(np.abs(omega - probs[rows].sum(axis=0, dtype=np.float64)).sum())


def lp_rounding(x: np.ndarray, rc: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` rows with the largest LP values, ties by increasing reduced cost then index.

    Example:
        >>> lp_rounding(np.array([1.0, 0.4, 0.6, 0.0]), np.array([-1.0, 0.0, 0.0, 2.0]), 2)
        array([0, 2])
    """
    candidates = np.union1d(np.flatnonzero(x > 0), smallest(rc, budget))  # enough rows to fill the budget
    order = np.lexsort((candidates, rc[candidates], -x[candidates]))
    return np.sort(candidates[order[:budget]])


def balanced_greedy(
    lin_cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, lam: float, deadline: float,
    *, steps: int = 40, min_steps: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Lagrangian heuristic for Eq. 9: the b cheapest rows at class prices ``y``, ``y`` moved by dual ascent.

    At prices ``y`` (``0 <= y <= 2 lam``) the b rows of smallest ``c_i - P_i y`` are chosen; ``y`` then rises for
    classes short of their target and falls for classes over it (projected supergradient steps on the
    Lagrangian bound of :func:`~cbal_lightning.selection.lp.lagrangian_bound`, step ``lam / sqrt(t + 1)``
    scaled by the largest deviation). Runs ``steps`` steps, fewer once ``deadline`` passes (never fewer than
    ``min_steps``, so the answer is never plain top-b). Returns the selection of best Eq. 9 objective seen and
    the prices of best Lagrangian bound.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> rows, y = balanced_greedy(np.array([0.5, 0.4, 0.9]), probs, np.array([1.0, 1.0]), 2, 1.0, float("inf"))
        >>> rows.tolist()
        [1, 2]
    """
    y = np.full(probs.shape[1], lam)  # mid-range prices
    best_rows, best_value, best_y, best_bound = None, np.inf, y, -np.inf
    for step in range(steps):
        price = lin_cost - (probs @ y.astype(probs.dtype)).astype(np.float64)
        rows = smallest(price, budget)
        deviation = omega - probs[rows].sum(axis=0, dtype=np.float64)  # Omega - P^T z
        bound = float(price[rows].sum() + y @ omega - lam * omega.sum())
        value = float(lin_cost[rows].sum() - lam * omega.sum() + lam * (np.abs(deviation).sum() + deviation.sum()))
        if value < best_value:  # one-sided value: lin - lam sum Omega + 2 lam sum max(deviation, 0)
            best_rows, best_value = rows, value
        if bound > best_bound:
            best_y, best_bound = y, bound
        if step + 1 >= min_steps and time.perf_counter() >= deadline:
            break
        scale = max(float(np.abs(deviation).max()), 1e-12)
        y = np.clip(y + lam / np.sqrt(step + 1) * deviation / scale, 0.0, 2 * lam)
    return np.sort(best_rows), best_y


def swap_search(
    chosen: np.ndarray,
    frontier: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    lam: float,
    deadline: float,
    *,
    pool: int = 200,
    group: int = 40,
    doubles: int = 400,
    pair_rows: np.ndarray | None = None,
    pairs: int = 10,
    pair_target: float = -np.inf,
    max_rounds: int = 500,
) -> np.ndarray:
    """Best-improvement swaps (one row out, one in) among the ``frontier`` rows, on the exact Eq. 9 objective.

    Each round evaluates two neighbourhoods exactly (the second only when the first has no improving swap) and
    applies the best improving swap:

    * the ``pool x pool`` swaps of the rows ranked best by the exact change of a single removal and of a
      single addition;
    * every swap within one predicted class (same arg-max of ``P``) among the ``group`` selected and the
      ``group`` unselected frontier rows of that class nearest the frontier: ``P_out - P_in`` is then small,
      which is what trims the residual deviations ``Omega - P^T z`` of an LP rounding when most classes sit
      exactly on their targets (cycle 1, ``Omega = b/C``). A single-move ranking never proposes these pairs:
      alone, each move shifts a whole unit of mass.

    When no single swap improves, a *double move* is tried: two of the ``doubles`` best (non-improving) swaps
    applied together, on disjoint rows, evaluated exactly (their deviation changes can cancel where neither
    helps alone; measured at CIFAR-10-LT size, IF 1, cycle 3, lam 3: gap 1.19e-4 -> 9.1e-5).

    When that fails too, with ``pair_rows`` given (rows of ``frontier``, e.g. those nearest the reduced-cost
    frontier), at most ``PAIR_MAX_CLASSES`` classes and the objective still above ``pair_target``: a
    *complementary pair*, two swaps among ``pair_rows`` whose deviation changes cancel, found for every swap by a
    k-d tree query for the ``pairs`` swaps nearest to the opposite of what it leaves (neither need rank among the
    best single swaps, as the double moves' must). :func:`~cbal_lightning.selection.engine.balanced_select` polishes
    a copy of its swap optimum this way (docs/selection.md: real posteriors, lam 3).

    Stops when nothing improves, after ``max_rounds`` or at ``deadline``. Returns the sorted selection.

    Example:
        >>> probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> swap_search(np.array([0, 1]), np.arange(3), np.zeros(3), probs, np.array([1.0, 1.0]), 1.0,
        ...             float("inf")).tolist()
        [1, 2]
    """
    selected = np.zeros(cost.size, dtype=bool)
    selected[chosen] = True
    deviation = omega - probs[chosen].sum(axis=0, dtype=np.float64)  # Omega - P^T z
    p_front = probs[frontier]  # in the dtype of probs (float32 stays float32)
    c_front = cost[frontier]
    chunk = max(1, _TERMS // (pool * probs.shape[1]))
    classes = p_front.argmax(axis=1)  # frontier positions are ordered as `frontier`, i.e. by row index
    order = np.argsort(classes, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(classes[order])) + 1) if order.size else []
    pair_pos = None  # positions in `frontier` of the rows for the complementary pairs
    cost_sum = float(cost[chosen].sum())

    def value(dev: np.ndarray) -> float:  # Eq. 9 objective of the current selection
        return cost_sum + lam * float(np.abs(dev).sum())

    if pair_rows is not None and pairs > 0 and probs.shape[1] <= PAIR_MAX_CLASSES:
        pair_pos = np.searchsorted(frontier, np.intersect1d(pair_rows, frontier))
    for _ in range(max_rounds):
        if time.perf_counter() >= deadline:
            break
        inside = selected[frontier]
        base = np.abs(deviation).sum()
        add = np.where(inside, np.inf, c_front + lam * (np.abs(deviation - p_front).sum(axis=1) - base))
        drop = np.where(inside, -c_front + lam * (np.abs(deviation + p_front).sum(axis=1) - base), np.inf)
        ins, outs = smallest(add, pool), smallest(drop, pool)
        ins, outs = ins[np.isfinite(add[ins])], outs[np.isfinite(drop[outs])]
        if ins.size == 0 or outs.size == 0:
            break
        best, near = (0.0, -1, -1), []

        def evaluate(blocks):  # noqa: ANN001, ANN202 - exact Eq. 9 change of every swap in the blocks
            nonlocal best
            for rows, cand in blocks:
                if time.perf_counter() >= deadline:
                    return
                l1 = np.abs(deviation + p_front[rows][:, None, :] - p_front[cand][None, :, :]).sum(axis=2)
                delta = c_front[cand][None, :] - c_front[rows][:, None] + lam * (l1 - base)
                a, b = np.unravel_index(np.argmin(delta), delta.shape)
                if delta[a, b] < best[0]:
                    best = (float(delta[a, b]), int(rows[a]), int(cand[b]))
                if doubles:  # the block's best few swaps, improving or not, for the double moves
                    top = smallest(delta.ravel(), _NEAR_PER_BLOCK)
                    a, b = np.unravel_index(top, delta.shape)
                    near.append((rows[a], cand[b], delta[a, b]))

        evaluate((outs[lo : lo + chunk], ins) for lo in range(0, outs.size, chunk))
        if best[0] >= -1e-12 and group > 0:  # only then the same-class swaps (C blocks: costly when C is large)
            evaluate((g_out[smallest(drop[g_out], group)], g_in[smallest(add[g_in], group)])
                     for members in groups
                     for g_in, g_out in [(members[~inside[members]], members[inside[members]])]
                     if g_in.size and g_out.size)
        if best[0] < -1e-12:
            moves = [best[1:]]
        else:
            moves = []
            if doubles and near and time.perf_counter() < deadline:
                moves = _best_double(near, p_front, c_front, deviation, lam, doubles, deadline)
            if not moves and pair_pos is not None and value(deviation) > pair_target:
                p_out, p_in = pair_pos[inside[pair_pos]], pair_pos[~inside[pair_pos]]
                if p_out.size and p_in.size and (
                        time.perf_counter() + _PAIR_SECONDS * p_out.size * p_in.size * pairs < deadline):
                    moves = _complementary_pair(p_out, p_in, p_front, c_front, deviation, lam, pairs)
            if not moves:
                break
        for leave, enter in moves:
            selected[frontier[leave]], selected[frontier[enter]] = False, True
            deviation += p_front[leave] - p_front[enter]
            cost_sum += float(c_front[enter] - c_front[leave])
    return np.flatnonzero(selected)


def perturbed_search(
    chosen: np.ndarray,
    frontier: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    lam: float,
    deadline: float,
    *,
    seed: int = 0,
    max_moves: int = 3,
    patience: int = 100,
    walks: int = 5,
) -> np.ndarray:
    """Iterated local search on Eq. 9 from a swap-search optimum ``chosen``: random kicks, then swap descent.

    Each step swaps 1 to ``max_moves`` random selected frontier rows for as many random unselected ones and descends
    with :func:`swap_search` (single, same-class and double swaps); the result replaces the current selection when
    its objective is lower. After ``patience`` steps without improvement the walk restarts from ``chosen``; after
    ``walks`` walks in a row that found nothing better than the best, or at ``deadline``, the search stops. Returns the
    best selection met (``chosen`` if none was better), sorted. Seeded by ``seed``: a search that stalls before
    ``deadline`` returns the same selection on any machine.

    Measured on the issue's small high-lambda case (N=300, C=5, b=30, lam=50): the swap optimum -40.11, HiGHS MILP on
    the whole problem -39.91 after 3 s and -40.71 after 10 s, 300 steps of this search (0.5 s) -40.37 to -41.38 over
    six seeds (mean -40.72). Kicks of up to 6 moves or accepting worse selections did worse (means -40.16 to -40.57).

    Example:
        >>> probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> perturbed_search(np.array([0, 1]), np.arange(4), np.array([0.0, 0.05, 0.1, 0.2]), probs,
        ...                  np.array([1.0, 1.0]), 1.0, time.perf_counter() + 0.05).tolist()
        [0, 2]
    """
    rng = np.random.default_rng(seed)
    start = np.sort(np.asarray(chosen))
    best = current = start
    best_value = current_value = start_value = objective(cost, probs, omega, lam, start)
    idle = stale_walks = 0
    while time.perf_counter() < deadline and stale_walks < walks:
        selected = np.zeros(cost.size, dtype=bool)
        selected[current] = True
        inside, outside = frontier[selected[frontier]], frontier[~selected[frontier]]
        moves = min(int(rng.integers(1, max_moves + 1)), inside.size, outside.size)
        if moves == 0:
            break
        selected[rng.choice(inside, moves, replace=False)] = False
        selected[rng.choice(outside, moves, replace=False)] = True
        candidate = swap_search(np.flatnonzero(selected), frontier, cost, probs, omega, lam, deadline, doubles=100)
        value = objective(cost, probs, omega, lam, candidate)
        if value < current_value - 1e-12:
            current, current_value, idle = candidate, value, 0
            if value < best_value - 1e-12:
                best, best_value, stale_walks = candidate, value, 0
        else:
            idle += 1
        if idle >= patience:  # a fresh walk from the start
            current, current_value, idle, stale_walks = start, start_value, 0, stale_walks + 1
    return best


def _complementary_pair(
    outs: np.ndarray, ins: np.ndarray, p_front: np.ndarray, c_front: np.ndarray, deviation: np.ndarray, lam: float,
    neighbours: int,
) -> list[tuple[int, int]]:
    """The best improving pair of swaps among the ``outs x ins`` swaps whose deviation changes cancel; [] if none.

    For every swap ``s`` (deviation after it ``d + u_s``) the ``neighbours`` swaps ``t`` with ``u_t`` nearest to
    ``-(d + u_s)`` are found with a k-d tree (Euclidean); each pair on disjoint rows is evaluated exactly on Eq. 9.
    Neither swap need help alone, and neither need be among the best single swaps (what the double moves of
    :func:`swap_search` try). k-d trees lose their edge in many dimensions, so :func:`swap_search` tries this only
    up to ``PAIR_MAX_CLASSES`` classes.

    The neighbours are searched only in the classes whose deviation a pair can move across zero. Where ``|d_c|`` is at
    least twice the largest ``|u_c|``, the term ``lam |d_c + u_c + u'_c|`` is linear in the pair (the exact evaluation
    counts it), and matching that coordinate would only mislead the search: at query 2 most classes are short or over
    by many samples.
    """
    o, i = np.repeat(outs, ins.size), np.tile(ins, outs.size)
    shift = np.asarray(p_front[o], dtype=np.float64) - p_front[i]  # change of Omega - P^T z per swap
    cost_change = c_front[i] - c_front[o]
    near_zero = np.abs(deviation) < 2 * np.abs(shift).max(axis=0)  # classes a pair can move across their target
    if not near_zero.any():  # the objective is linear in the pair: no pair beats the best single swap
        return []
    after = deviation + shift
    neighbours = min(neighbours, o.size)
    tree = cKDTree(shift[:, near_zero])
    _, near = tree.query(-after[:, near_zero], k=neighbours, eps=_PAIR_EPS)
    first = np.repeat(np.arange(o.size), neighbours)
    second = near.reshape(-1)
    disjoint = (o[first] != o[second]) & (i[first] != i[second])
    first, second = first[disjoint], second[disjoint]
    base = np.abs(deviation).sum()
    best = (-1e-12, -1)
    step = max(1, _TERMS // (4 * deviation.size))  # one float64 temporary of <= 8 MB
    for lo in range(0, first.size, step):
        a, b = first[lo : lo + step], second[lo : lo + step]
        total = cost_change[a] + cost_change[b] + lam * (np.abs(after[a] + shift[b]).sum(axis=1) - base)
        k = int(np.argmin(total))
        if total[k] < best[0]:
            best = (float(total[k]), lo + k)
    if best[1] < 0:
        return []
    a, b = first[best[1]], second[best[1]]
    return [(int(o[a]), int(i[a])), (int(o[b]), int(i[b]))]


def _best_double(
    near: list[tuple[np.ndarray, np.ndarray, np.ndarray]], p_front: np.ndarray, c_front: np.ndarray,
    deviation: np.ndarray, lam: float, keep: int, deadline: float,
) -> list[tuple[int, int]]:
    """The best improving pair of swaps among the ``keep`` best single swaps in ``near`` (out, in, delta), on
    disjoint rows, by the exact change of Eq. 9; [] if no pair improves (before ``deadline``)."""
    outs, ins, delta = (np.concatenate(part) for part in zip(*near))
    top = smallest(delta, keep)
    outs, ins = outs[top], ins[top]
    shift = np.asarray(p_front[outs], dtype=np.float64) - p_front[ins]  # change of Omega - P^T z per swap
    cost_change = c_front[ins] - c_front[outs]
    base = np.abs(deviation).sum()
    chunk = max(1, _TERMS // 4 // (outs.size * deviation.size))  # one float64 temporary of <= 8 MB
    best = (-1e-12, -1, -1)
    for lo in range(0, outs.size, chunk):
        if time.perf_counter() >= deadline:
            break
        hi = min(lo + chunk, outs.size)
        terms = shift[lo:hi, None, :] + shift[None, :, :]
        terms += deviation
        l1 = np.abs(terms, out=terms).sum(axis=2)
        total = cost_change[lo:hi, None] + cost_change[None, :] + lam * (l1 - base)
        clash = (outs[lo:hi, None] == outs[None, :]) | (ins[lo:hi, None] == ins[None, :])
        total[clash] = np.inf
        a, b = np.unravel_index(np.argmin(total), total.shape)
        if total[a, b] < best[0]:
            best = (float(total[a, b]), lo + int(a), int(b))
    if best[1] < 0:
        return []
    return [(int(outs[best[1]]), int(ins[best[1]])), (int(outs[best[2]]), int(ins[best[2]]))]
