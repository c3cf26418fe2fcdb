from impetus import stack


def test_a_cluster_id_never_starts_with_a_dash():
    # 0xf8 encodes to '-' first; Kafka's storage tool would take that id for an option and fail to format
    drawn = iter([bytes([0xF8]) + bytes(15), bytes(range(16))])
    assert stack.new_cluster_id(lambda: next(drawn)) == "AAECAwQFBgcICQoLDA0ODw"


def test_cluster_ids_are_22_url_safe_characters():
    ids = {stack.new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
