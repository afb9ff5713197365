import pytest

from datavolume.layout import DataRoot, OutsideRoot


def test_the_layout(tmp_path):
    root = DataRoot(tmp_path)
    assert root.downloads == tmp_path / "raw" / "downloads"
    assert root.generated_tree("tiny") == tmp_path / "raw" / "extracted" / "tiny"
    assert root.archive_tree("ab12") == tmp_path / "raw" / "extracted" / "archive-ab12"
    assert root.dataset("tiny") == tmp_path / "datasets" / "tiny"
    assert root.staging("tiny") == tmp_path / "datasets" / ".staging" / "tiny"
    assert root.versions == tmp_path / "datasets" / ".versions"
    assert root.run("abc123").root == tmp_path / "runs" / "abc123"
    assert root.run("abc123").best == tmp_path / "runs" / "abc123" / "checkpoints" / "best.keras"
    assert root.jobs_db("trainer") == tmp_path / "state" / "trainer-jobs.db"
    assert root.job_logs("dataset") == tmp_path / "state" / "dataset-logs"
    assert root.relative(tmp_path.resolve() / "datasets" / "x") == "datasets/x"


@pytest.mark.parametrize("run_id", ["../x", "a/b", "", "a.b"])
def test_a_run_id_is_alphanumeric(tmp_path, run_id):
    with pytest.raises(ValueError, match="bad run id"):
        DataRoot(tmp_path).run(run_id)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "tiny-imagenet-200.zip"),
        ("http://h/a/b%20c.zip?x=1", "b_c.zip"),
        ("http://h/", "download"),
        ("http://h/..", "download"),
    ],
)
def test_a_download_gets_a_safe_file_name(tmp_path, url, name):
    assert DataRoot(tmp_path).download(url) == tmp_path / "raw" / "downloads" / name


def test_paths_inside_the_root_resolve(tmp_path):
    root = DataRoot(tmp_path)
    (tmp_path / "a").mkdir()
    assert root.resolve("a/b.zip") == (tmp_path / "a" / "b.zip").resolve()
    assert root.resolve(tmp_path / "a") == (tmp_path / "a").resolve()
    assert root.resolve(str(tmp_path.resolve() / "a" / "x")) == (tmp_path / "a" / "x").resolve()
    assert root.resolve("a/../a/x") == (tmp_path / "a" / "x").resolve()


def test_a_link_staying_inside_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert DataRoot(tmp_path).resolve("alias/a.zip") == tmp_path.resolve() / "real" / "a.zip"


@pytest.mark.parametrize("given", ["../x", "raw/../../x", "/etc/passwd", "out/x", "", "a\x00b"])
def test_escapes_and_bad_names_are_refused_without_server_paths(tmp_path, given):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)  # a link pointing out of the root
    with pytest.raises(OutsideRoot) as caught:
        DataRoot(root).resolve(given)
    assert str(tmp_path) not in str(caught.value)


@pytest.mark.parametrize(
    "given", ["a" * 256, "raw/" + "b" * 300 + ".zip", "/".join(["c" * 200] * 25), "é" * 128]
)
def test_names_too_long_for_the_file_system_are_refused(tmp_path, given):
    with pytest.raises(OutsideRoot, match="too long"):
        DataRoot(tmp_path).resolve(given)


def test_a_name_of_255_bytes_is_fine(tmp_path):
    assert DataRoot(tmp_path).resolve("a" * 255).name == "a" * 255


@pytest.mark.parametrize("given", ["raw/loop", "raw/loop/x.zip"])
def test_a_loop_of_links_is_refused_without_server_paths(tmp_path, given):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "loop").symlink_to("loop")
    with pytest.raises(OutsideRoot, match="cannot be resolved") as caught:
        DataRoot(tmp_path).resolve(given)
    assert str(tmp_path) not in str(caught.value)
