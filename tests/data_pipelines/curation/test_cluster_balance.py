"""Cluster-balanced resampling: deterministic, thins big clusters, keeps the smallest whole."""
import numpy as np

from data_pipelines.curation import balance


def _clustered(sizes, seed=0):
    """Points around well-separated centres, `sizes[k]` of cluster k, shuffled; and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(labels)
    centres = np.eye(len(sizes), 8) * 10
    return centres[labels] + rng.normal(0, 0.3, (len(labels), 8)), labels


def test_kmeans_finds_separated_clusters():
    features, labels = _clustered([40, 25, 10])
    found = balance.kmeans(features, 3, seed=0)
    # Same partition up to renaming: every true cluster maps to exactly one found cluster.
    pairs = set(zip(labels.tolist(), found.tolist()))
    assert len(pairs) == 3 and len({a for a, _ in pairs}) == len({b for _, b in pairs}) == 3


def test_keep_is_deterministic_and_seeded():
    features, _ = _clustered([300, 30, 10])
    first = balance.cluster_balance_keep(features, 3, seed=7)
    np.testing.assert_array_equal(first, balance.cluster_balance_keep(features, 3, seed=7))
    assert not np.array_equal(first, balance.cluster_balance_keep(features, 3, seed=8))
    assert first.dtype == bool and first.shape == (340,)


def test_big_clusters_are_kept_less_often_and_the_smallest_whole():
    features, labels = _clustered([400, 100, 16])
    keep = balance.cluster_balance_keep(features, 3, seed=0)
    rates = [keep[labels == k].mean() for k in range(3)]
    assert rates[2] == 1.0  # p = 1 for the smallest cluster
    # Expected rates sqrt(16 / size): 0.2 and 0.4.
    assert abs(rates[0] - 0.2) < 0.07 and abs(rates[1] - 0.4) < 0.12
    assert rates[0] < rates[1] < rates[2]


def test_the_draw_of_an_item_depends_only_on_seed_and_index():
    np.testing.assert_array_equal(balance.index_uniforms(5, 3), balance.index_uniforms(50, 3)[:5])
    draws = balance.index_uniforms(10000, 3)
    assert 0 <= draws.min() and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.02


def test_edge_cases():
    assert balance.cluster_balance_keep(np.zeros((0, 4)), 4, seed=0).shape == (0,)
    # Identical items all fall in one cluster, the smallest there is: every one is kept.
    assert balance.cluster_balance_keep(np.ones((3, 4)), 16, seed=0).all()


def test_hash_features_are_the_bits():
    features = balance.hash_features(np.array([1, 2**63], np.uint64))
    assert features.shape == (128,) and features.dtype == np.float32
    assert features[63] == 1 and features[64] == 1 and features.sum() == 2
