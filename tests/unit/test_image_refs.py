"""Image references read the way Docker reads them (`aegir.docker.parse_image_ref`), on exact strings.

The expectations follow distribution/reference (``normalize.go``: ``splitDockerDomain``,
``ParseNormalizedNamed``, ``familiarizeName``; ``regexp.go``; ``reference.go``: ``Parse``)
and opencontainers/go-digest (the algorithms Docker verifies and their hex length), which
Docker uses for ``image:``, ``docker tag``, RepoTags and RepoDigests alike.
"""

from __future__ import annotations

import pytest

from aegir.docker import ImageRef, InvalidReference, image_keys, image_ref, parse_image_ref

D = "sha256:" + "0123456789abcdef" * 4
E = "sha256:" + "fedcba9876543210" * 4
HUB_NGINX = "docker.io/library/nginx"


@pytest.mark.parametrize("text, name, tag, digest, familiar", [
    # Docker Hub's official images: the bare name, library/, docker.io/, index.docker.io/, all one repository
    ("nginx", HUB_NGINX, None, None, "nginx:latest"),
    ("nginx:1.25", HUB_NGINX, "1.25", None, "nginx:1.25"),
    ("library/nginx:1.25", HUB_NGINX, "1.25", None, "nginx:1.25"),
    ("docker.io/nginx:1.25", HUB_NGINX, "1.25", None, "nginx:1.25"),
    ("docker.io/library/nginx:1.25", HUB_NGINX, "1.25", None, "nginx:1.25"),
    ("index.docker.io/library/nginx:1.25", HUB_NGINX, "1.25", None, "nginx:1.25"),
    ("index.docker.io/nginx", HUB_NGINX, None, None, "nginx:latest"),
    # a user's Hub repository: no library/ added
    ("acme/web:2", "docker.io/acme/web", "2", None, "acme/web:2"),
    ("docker.io/acme/web:2", "docker.io/acme/web", "2", None, "acme/web:2"),
    ("acme/team/web", "docker.io/acme/team/web", None, None, "acme/team/web:latest"),
    # library/ stays where it has more than one component below it (Docker's familiarizeName)
    ("library/a/b:1", "docker.io/library/a/b", "1", None, "library/a/b:1"),
    # other registries: a first component with a dot, a port, localhost, or an upper-case letter is a domain
    ("registry.local:5000/x/y:1", "registry.local:5000/x/y", "1", None, "registry.local:5000/x/y:1"),
    ("registry:5000/web", "registry:5000/web", None, None, "registry:5000/web:latest"),
    ("ghcr.io/acme/web", "ghcr.io/acme/web", None, None, "ghcr.io/acme/web:latest"),
    ("localhost/web:dev", "localhost/web", "dev", None, "localhost/web:dev"),
    ("127.0.0.1:5000/lab/pinned:1", "127.0.0.1:5000/lab/pinned", "1", None, "127.0.0.1:5000/lab/pinned:1"),
    ("[::1]:5000/web", "[::1]:5000/web", None, None, "[::1]:5000/web:latest"),
    ("Registry.Local/web", "Registry.Local/web", None, None, "Registry.Local/web:latest"),
    # registry-1.docker.io is a host like any other to Docker: not normalised to docker.io
    ("registry-1.docker.io/library/nginx", "registry-1.docker.io/library/nginx", None, None,
     "registry-1.docker.io/library/nginx:latest"),
    # tags: case kept, up to 128 characters; separators in names
    ("nginx:Stable_1.25-alpine", HUB_NGINX, "Stable_1.25-alpine", None, "nginx:Stable_1.25-alpine"),
    ("a__b/c---d.e_f", "docker.io/a__b/c---d.e_f", None, None, "a__b/c---d.e_f:latest"),
    # digests: alone, and next to a tag (Docker pulls by the digest); no tag latest added to a digest
    (f"nginx@{D}", HUB_NGINX, None, D, f"nginx@{D}"),
    (f"nginx:1.25@{D}", HUB_NGINX, "1.25", D, f"nginx:1.25@{D}"),
    (f"docker.io/library/nginx:1.25@{D}", HUB_NGINX, "1.25", D, f"nginx:1.25@{D}"),
    (f"registry.local:5000/x/y:1@{D}", "registry.local:5000/x/y", "1", D, f"registry.local:5000/x/y:1@{D}"),
    ("x@sha512:" + "ab" * 64, "docker.io/library/x", None, "sha512:" + "ab" * 64, "x@sha512:" + "ab" * 64),
])
def test_a_reference_is_read_as_docker_normalises_it(text, name, tag, digest, familiar):
    ref = parse_image_ref(text)
    assert (ref.name, ref.tag, ref.digest, str(ref)) == (name, tag, digest, familiar)


@pytest.mark.parametrize("text, message", [
    ("Nginx:1", "invalid reference format: repository name (library/Nginx) must be lowercase"),
    ("acme/Web", "invalid reference format: repository name (acme/Web) must be lowercase"),
    ("registry.local/X/y", "invalid reference format: repository name (X/y) must be lowercase"),
    ("docker.io/Library/x", "invalid reference format: repository name (Library/x) must be lowercase"),
    ("nginx:", "invalid reference format: 'nginx:'"),
    ("nginx:-x", "invalid reference format: 'nginx:-x'"),
    ("nginx:" + "t" * 129, "invalid reference format: 'nginx:" + "t" * 129 + "'"),
    ("a//b", "invalid reference format: 'a//b'"),
    ("-a", "invalid reference format: '-a'"),
    ("a_", "invalid reference format: 'a_'"),
    ("", "invalid reference format: ''"),
    ("nginx@sha256:ab", "invalid reference format: 'nginx@sha256:ab'"),
    ("nginx@sha256:" + "AB" * 32, "invalid checksum digest format: sha256:" + "AB" * 32),
    ("nginx@sha256:" + "ab" * 33, "invalid checksum digest format: sha256:" + "ab" * 33),
    ("nginx@md5:" + "ab" * 16, "unsupported digest algorithm: md5:" + "ab" * 16),
    ("ab" * 32, f"invalid repository name ({'ab' * 32}), cannot specify 64-byte hexadecimal strings"),
    ("a/" * 128 + "b", "repository name must not be more than 255 characters"),
    ("x" * 1025, "invalid reference format: longer than 1024 characters"),
])
def test_what_docker_refuses_is_refused_with_dockers_reason(text, message):
    with pytest.raises(InvalidReference) as caught:
        parse_image_ref(text)
    assert caught.value.message == message


def test_an_image_value_compose_interpolates_or_docker_refuses_is_no_reference():
    assert image_ref("${IMAGE}") is None and image_ref("lab/x:${TAG:-1}") is None and image_ref("Nginx") is None
    assert image_ref("nginx") == ImageRef(HUB_NGINX)


def test_a_reference_finds_an_image_by_its_tag_or_its_digest_and_a_pinned_one_by_the_digest_first():
    assert parse_image_ref("library/nginx").key == "docker.io/library/nginx:latest"
    assert parse_image_ref(f"nginx:1.25@{D}").key == f"{HUB_NGINX}@{D}"  # what Docker resolves it to
    assert parse_image_ref(f"nginx:1.25@{D}").keys == {f"{HUB_NGINX}@{D}", f"{HUB_NGINX}:1.25"}
    assert parse_image_ref(f"nginx@{D}").keys == {f"{HUB_NGINX}@{D}"}


def test_an_images_keys_are_its_repotags_and_repodigests_normalised_and_docker_placeholders_left_out():
    assert image_keys(["nginx:1.25", "lab/web:2", "<none>:<none>"], [f"nginx@{D}", "<none>@<none>"]) == {
        f"{HUB_NGINX}:1.25", "docker.io/lab/web:2", f"{HUB_NGINX}@{D}"}
    # a digest matches the image of that RepoDigest whatever the tag next to it; another digest does not
    digest_only = image_keys([], [f"nginx@{D}"])
    assert parse_image_ref(f"docker.io/library/nginx:1.99@{D}").keys & digest_only
    assert not parse_image_ref(f"nginx:1.25@{E}").keys & digest_only
    assert not parse_image_ref(f"acme/nginx@{D}").keys & digest_only  # same digest, another repository
