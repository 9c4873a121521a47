//! Exact linear assignment on a dense square cost matrix: Jonker-Volgenant (1987).
//! Column reduction, reduction transfer, two rounds of augmenting row reduction, then
//! Dijkstra-style shortest augmenting paths for the rows still free. Written from the paper's
//! description; the result is checked against brute force and a Hungarian reference in tests.
// Index loops mirror the paper's pseudo-code (columns j, j1, j2 index several arrays at once), and
// the scan `for k in hi..n` fixes its range at entry while `hi` moves, exactly as in LAPJV.
#![allow(clippy::needless_range_loop, clippy::mut_range_bound)]

/// Solves min sum cost[i][row_to_col[i]] over permutations. `cost` is row-major `n x n`.
/// Returns `row_to_col`. Costs must be finite.
pub fn assign(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "cost matrix must be n x n");
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    let c = |i: usize, j: usize| cost[i * n + j];
    const NONE: usize = usize::MAX;
    let mut x = vec![NONE; n]; // row -> col
    let mut y = vec![NONE; n]; // col -> row
    let mut v = vec![f64::INFINITY; n];

    // Column reduction: each column to its cheapest row.
    for i in 0..n {
        for j in 0..n {
            if c(i, j) < v[j] {
                v[j] = c(i, j);
                y[j] = i;
            }
        }
    }
    let mut unique = vec![true; n];
    for j in (0..n).rev() {
        let i = y[j];
        if x[i] == NONE {
            x[i] = j;
        } else {
            unique[i] = false;
            y[j] = NONE;
        }
    }
    // Reduction transfer for rows holding exactly one column.
    let mut free: Vec<usize> = Vec::new();
    for i in 0..n {
        if x[i] == NONE {
            free.push(i);
        } else if unique[i] {
            let j = x[i];
            let mut m = f64::INFINITY;
            for j2 in 0..n {
                if j2 != j {
                    m = m.min(c(i, j2) - v[j2]);
                }
            }
            v[j] -= m;
        }
    }

    // Augmenting row reduction, twice. The paper bounds it by current * n steps, which on
    // colour (geometric) costs becomes an O(n^3) price war: 1000 pixels took seconds. A budget
    // of 4n steps keeps its cheap wins (measured best of 1n/4n/16n) and leaves the rest to
    // the shortest-path phase, which is exact regardless.
    let arr_cap = 4 * n;
    for _ in 0..2 {
        if free.is_empty() {
            break;
        }
        let n_free = free.len();
        let mut current = 0usize;
        let mut new_free = 0usize;
        let mut rr_cnt = 0usize;
        while current < n_free {
            rr_cnt += 1;
            let i = free[current];
            current += 1;
            let (mut u1, mut j1) = (c(i, 0) - v[0], 0usize);
            let (mut u2, mut j2) = (f64::INFINITY, NONE);
            for j in 1..n {
                let h = c(i, j) - v[j];
                if h < u2 {
                    if h >= u1 {
                        u2 = h;
                        j2 = j;
                    } else {
                        u2 = u1;
                        u1 = h;
                        j2 = j1;
                        j1 = j;
                    }
                }
            }
            let mut i0 = y[j1];
            let v1_new = v[j1] - (u2 - u1);
            let lowers = v1_new < v[j1];
            if rr_cnt < current * n && rr_cnt < arr_cap {
                if lowers {
                    v[j1] = v1_new;
                } else if i0 != NONE && j2 != NONE {
                    j1 = j2;
                    i0 = y[j2];
                }
                if i0 != NONE {
                    if lowers {
                        current -= 1;
                        free[current] = i0;
                    } else {
                        free[new_free] = i0;
                        new_free += 1;
                    }
                }
            } else if i0 != NONE {
                free[new_free] = i0;
                new_free += 1;
            }
            x[i] = j1;
            y[j1] = i;
        }
        free.truncate(new_free);
    }

    // Shortest augmenting paths for the remaining free rows.
    let mut d = vec![0.0f64; n];
    let mut pred = vec![0usize; n];
    let mut cols: Vec<usize> = (0..n).collect();
    for &f in &free {
        for (k, cj) in cols.iter_mut().enumerate() {
            *cj = k;
        }
        for j in 0..n {
            d[j] = c(f, j) - v[j];
            pred[j] = f;
        }
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut n_ready = 0usize;
        let mut last = NONE;
        while last == NONE {
            if lo == hi {
                n_ready = lo;
                // Move every column at the minimum distance into [lo, hi).
                hi = lo + 1;
                let mut mind = d[cols[lo]];
                for k in hi..n {
                    let j = cols[k];
                    if d[j] <= mind {
                        if d[j] < mind {
                            hi = lo;
                            mind = d[j];
                        }
                        cols[k] = cols[hi];
                        cols[hi] = j;
                        hi += 1;
                    }
                }
                for &j in &cols[lo..hi] {
                    if y[j] == NONE {
                        last = j;
                        break;
                    }
                }
            }
            if last == NONE {
                // Scan the columns at the current minimum.
                while lo != hi && last == NONE {
                    let j = cols[lo];
                    lo += 1;
                    let i = y[j];
                    let mind = d[j];
                    let row = &cost[i * n..(i + 1) * n];
                    let h = row[j] - v[j] - mind;
                    let mut k = hi;
                    while k < n {
                        let j2 = cols[k];
                        let cred = row[j2] - v[j2] - h;
                        if cred < d[j2] {
                            d[j2] = cred;
                            pred[j2] = i;
                            if cred == mind {
                                if y[j2] == NONE {
                                    last = j2;
                                    break;
                                }
                                cols[k] = cols[hi];
                                cols[hi] = j2;
                                hi += 1;
                            }
                        }
                        k += 1;
                    }
                }
            }
        }
        // Update the prices of the columns finished before the last minimum.
        // d[last] is the shortest path length; columns scanned at that level need no change.
        let mind = d[last];
        for &j in &cols[..n_ready] {
            v[j] += d[j] - mind;
        }
        // Augment along the path.
        let mut j = last;
        loop {
            let i = pred[j];
            y[j] = i;
            let prev = x[i];
            x[i] = j;
            if i == f {
                break;
            }
            j = prev;
        }
    }
    x
}
