"""Run inside Blender: build projects with external files, and report what Blender lists for them.

Standard library and ``bpy`` only; works in Debian's Blender 3.4 and the bpy 5.0.1 module alike::

    blender -b --factory-startup --python-exit-code 1 --python make_scenes.py -- MODE ARGS...
    python make_scenes.py MODE ARGS...          # a Python that can import bpy

Modes:

``zoo OUT REPORT``
    Save ``OUT/proj/main.blend`` and its libraries, using every kind of external file Blender
    can list (images relative, absolute, missing, Windows-style, sequence, UDIM, packed; a linked
    library that links another one; a library deleted after linking; sound, font, movie clip, text,
    volume, Alembic cache, sequencer strips, modifier caches, point caches, OSL and IES nodes, an
    appended ID that keeps a weak reference to its library, a brush icon where Blender still has
    them), then reopen each saved file and report
    ``bpy.utils.blend_paths(absolute=False, local=True)`` as JSON in ``REPORT``.
``report REPORT FILE...``
    Open each file and report the same, plus which paths (absolute, of every library too) do not
    exist and which linked IDs are missing.
``render OUT``
    Save ``OUT/world/project/shots/main.blend`` (zstd-compressed): a tiny Cycles scene whose
    colours come from a relative texture, a ``//../`` texture, an absolute texture outside the
    project, and an object linked from ``//../libs/lib.blend`` whose material uses a texture
    relative to the library.

For each reported file: ``paths`` (Blender's list), ``indirect_libraries`` (the paths of libraries
Blender loaded because another library links them: Blender lists them for the main file, but they
are stored in the library, not in it), ``missing_paths`` and ``missing_ids``.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import wave
import zlib
from pathlib import Path
from typing import Any

import bpy

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def script_args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


# -- files on disk -------------------------------------------------------------------------------


def write_png(path: Path, rgb: tuple[int, int, int], size: int = 4) -> Path:
    """A small solid-colour PNG (written here so both Blender versions get identical bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    )
    return path


def write_wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    return path


def copy_font(dest: Path) -> Path:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, dest)
            return dest
    fonts = Path(bpy.utils.system_resource("DATAFILES", path="fonts"))
    for font in sorted(fonts.iterdir()):
        if font.suffix in (".ttf", ".otf", ".woff2"):
            dest = dest.with_suffix(font.suffix)
            shutil.copyfile(font, dest)
            return dest
    raise RuntimeError("no font file found to load")


# -- helpers inside Blender ----------------------------------------------------------------------


def empty_file() -> Any:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def save(path: Path, compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # relative_remap off: the "//" paths are set for the file's final place and must stay as written.
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=compress, relative_remap=False)


def load_image(disk: Path, stored: str, name: str | None = None) -> Any:
    image = bpy.data.images.load(str(disk))
    if name:
        image.name = name
    image.filepath = stored
    return image


def plane(scene: Any, name: str, location: tuple[float, float, float] = (0.0, 0.0, 0.0), size: float = 1.0) -> Any:
    s = size
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap")
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    scene.collection.objects.link(obj)
    return obj


def emission_material(name: str, image: Any) -> Any:
    """A material whose colour is the image, unlit, so a render shows exactly the texture."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    for node in list(nodes):
        nodes.remove(node)
    out = nodes.new("ShaderNodeOutputMaterial")
    emission = nodes.new("ShaderNodeEmission")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"
    links = mat.node_tree.links
    links.new(tex.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], out.inputs["Surface"])
    return mat


def textured_plane(scene: Any, name: str, image: Any, location: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Any:
    obj = plane(scene, name, location)
    obj.data.materials.append(emission_material(name + "Mat", image))
    return obj


def link_objects(library: Path, names: list[str], scene: Any) -> Any:
    """Link objects; the caller sets the library's stored path once all links are made (linking
    another library rewrites the "//" paths of an unsaved file's libraries)."""
    with bpy.data.libraries.load(str(library), link=True) as (_src, dst):
        dst.objects = names
    for obj in dst.objects:
        scene.collection.objects.link(obj)
    return dst.objects[0].library


# -- the dependency zoo --------------------------------------------------------------------------


def build_nested(proj: Path) -> Path:
    scene = empty_file()
    image = load_image(write_png(proj / "lib/nested/tex/nested.png", (0, 0, 255)), "//tex/nested.png")
    textured_plane(scene, "NestedPlane", image)
    path = proj / "lib/nested/nested.blend"
    save(path)
    return path


def build_library(proj: Path, outside: Path) -> Path:
    nested = build_nested(proj)
    scene = empty_file()
    rel = load_image(write_png(proj / "lib/lib_textures/lib.png", (255, 0, 0)), "//lib_textures/lib.png")
    absolute = write_png(outside / "lib_abs.png", (0, 255, 0))
    abs_image = load_image(absolute, str(absolute))
    lib_plane = textured_plane(scene, "LibPlane", rel)
    textured_plane(scene, "LibAbsPlane", abs_image, (3.0, 0.0, 0.0))
    nested_lib = link_objects(nested, ["NestedPlane"], scene)
    nested_lib.filepath = "//nested/nested.blend"
    # Parented to the linked object: whoever links LibPlane makes Blender load nested.blend too.
    lib_plane.parent = bpy.data.objects["NestedPlane"]
    path = proj / "lib/library.blend"
    save(path, compress=True)
    return path


def build_gone(proj: Path) -> Path:
    scene = empty_file()
    plane(scene, "GonePlane")
    path = proj / "lib/gone.blend"
    save(path)
    return path


def add_images(scene: Any, proj: Path, outside: Path) -> None:
    textured_plane(
        scene, "Wood", load_image(write_png(proj / "textures/wood.png", (200, 150, 100)), "//textures/wood.png")
    )
    absolute = write_png(outside / "abs.png", (10, 20, 30))
    load_image(absolute, str(absolute), "Absolute")
    load_image(write_png(proj / "textures/missing.png", (1, 2, 3)), "//textures/missing.png", "Missing")
    (proj / "textures/missing.png").unlink()
    load_image(write_png(proj / "textures/win.png", (4, 5, 6)), "//textures\\win.png", "Windows")
    load_image(write_png(proj.parent / "shared/up.png", (7, 8, 9)), "//..\\shared\\up.png", "WindowsUp")
    for frame in (1, 2, 3):
        write_png(proj / f"seq/frame_{frame:04d}.png", (frame * 40, 0, 0))
    seq = load_image(proj / "seq/frame_0001.png", "//seq/frame_0001.png", "Sequence")
    seq.source = "SEQUENCE"
    for tile in (1001, 1002):
        write_png(proj / f"udim/tile.{tile}.png", (0, tile % 256, 0))
    udim = load_image(proj / "udim/tile.1001.png", "//udim/tile.<UDIM>.png", "Udim")
    udim.source = "TILED"
    packed = bpy.data.images.load(str(write_png(proj / "textures/packed.png", (9, 9, 9))))
    packed.name = "Packed"
    packed.pack()
    packed.filepath = "//textures/packed.png"
    bpy.data.images.new("Generated", 8, 8).use_fake_user = True
    for image in bpy.data.images:
        image.use_fake_user = True


def add_sequencer(scene: Any, proj: Path) -> None:
    scene.sequence_editor_create()
    strips = scene.sequence_editor.sequences if hasattr(scene.sequence_editor, "sequences") else None
    if strips is None:  # 5.0 renamed sequences to strips
        strips = scene.sequence_editor.strips
    image_strip = strips.new_image("Frames", str(proj / "seq/frame_0001.png"), 1, 1)
    image_strip.elements.append("frame_0002.png")
    image_strip.directory = "//seq/"
    sound = strips.new_sound("Beep", str(proj / "audio/strip.wav"), 2, 1)
    sound.sound.filepath = "//audio/strip.wav"


def add_modifiers(scene: Any) -> None:
    target = plane(scene, "Modified", size=0.5)
    target.modifiers.new("Ocean", "OCEAN")  # its cache folder is listed even when nothing is baked
    cache = target.modifiers.new("MeshCache", "MESH_CACHE")
    cache.filepath = "//mdd/anim.mdd"
    cloth_obj = plane(scene, "Cloth", (0.0, 3.0, 0.0))
    cloth = cloth_obj.modifiers.new("Cloth", "CLOTH")
    cloth.point_cache.use_disk_cache = True
    particles_obj = plane(scene, "Emitter", (0.0, -3.0, 0.0))
    particles_obj.modifiers.new("Particles", "PARTICLE_SYSTEM")
    particles_obj.particle_systems[0].point_cache.use_disk_cache = True
    particles_obj.particle_systems[0].point_cache.use_external = True
    particles_obj.particle_systems[0].point_cache.filepath = "//particle_cache/"
    domain_obj = plane(scene, "Domain", (3.0, 3.0, 0.0))
    fluid = domain_obj.modifiers.new("Fluid", "FLUID")
    fluid.fluid_type = "DOMAIN"
    fluid.domain_settings.cache_directory = "//fluid_cache"
    soft_obj = plane(scene, "Soft", (3.0, -3.0, 0.0))
    soft_obj.modifiers.new("Softbody", "SOFT_BODY")
    soft_obj.modifiers["Softbody"].point_cache.use_disk_cache = True


def add_nodes(scene: Any, proj: Path) -> None:
    mat = bpy.data.materials.new("Scripted")
    mat.use_nodes = True
    script = mat.node_tree.nodes.new("ShaderNodeScript")
    script.mode = "EXTERNAL"
    script.filepath = "//osl/shader.osl"
    ies = mat.node_tree.nodes.new("ShaderNodeTexIES")
    ies.mode = "EXTERNAL"
    ies.filepath = "//ies/light.ies"
    group = bpy.data.node_groups.new("IesGroup", "ShaderNodeTree")
    group_ies = group.nodes.new("ShaderNodeTexIES")
    group_ies.mode = "EXTERNAL"
    group_ies.filepath = "//ies/group.ies"
    group.use_fake_user = True
    mat.use_fake_user = True
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world_ies = world.node_tree.nodes.new("ShaderNodeTexIES")
    world_ies.mode = "EXTERNAL"
    world_ies.filepath = "//ies/world.ies"
    scene.world = world


def add_misc(scene: Any, proj: Path, outside: Path) -> None:
    sound = bpy.data.sounds.load(str(write_wav(proj / "audio/beep.wav")))
    sound.filepath = "//audio/beep.wav"
    sound.use_fake_user = True
    write_wav(proj / "audio/strip.wav")
    font = bpy.data.fonts.load(str(copy_font(proj / "fonts/font.ttf")))
    font.filepath = "//fonts/" + Path(font.filepath).name
    text_curve = bpy.data.curves.new("Title", "FONT")
    text_curve.font = font
    scene.collection.objects.link(bpy.data.objects.new("Title", text_curve))
    builtin_curve = bpy.data.curves.new("Builtin", "FONT")  # uses <builtin>: never a dependency
    scene.collection.objects.link(bpy.data.objects.new("Builtin", builtin_curve))
    for frame in (1, 2):
        write_png(proj / f"clips/clip_{frame:04d}.png", (0, 0, frame * 60))
    clip = bpy.data.movieclips.load(str(proj / "clips/clip_0001.png"))
    clip.filepath = "//clips/clip_0001.png"
    clip.use_fake_user = True
    script = outside / "script.py"
    script.write_text("print('hello')\n", encoding="utf-8")
    bpy.data.texts.load(str(script))
    bpy.data.texts.new("Internal").write("# no file\n")
    brush = bpy.data.brushes.new("Iconic", mode="SCULPT")
    if hasattr(brush, "icon_filepath"):  # gone in 5.0 (brushes are assets there)
        brush.icon_filepath = "//icons/brush.png"
        brush.use_fake_user = True
    else:
        bpy.data.brushes.remove(brush)
    volume = bpy.data.volumes.new("Smoke")
    volume.filepath = "//vdb/smoke.vdb"
    volume.use_fake_user = True
    # An Alembic cache: export this very scene, then open the file as a CacheFile (Debian's 3.4 is
    # built without Alembic: no CacheFile there).
    abc = proj / "cache/scene.abc"
    abc.parent.mkdir(parents=True, exist_ok=True)
    try:
        bpy.ops.wm.alembic_export(filepath=str(abc), start=1, end=1)
    except AttributeError:
        return
    bpy.ops.cachefile.open(filepath=str(abc))
    cache_file = bpy.data.cache_files[-1]
    cache_file.filepath = "//cache/scene.abc"
    cache_file.use_fake_user = True


def add_weak_reference(proj: Path) -> None:
    """Append a material with "reuse local data": Blender remembers the library it came from."""
    source_scene = empty_file()
    bpy.data.materials.new("Reusable").use_fake_user = True
    plane(source_scene, "Unused")
    save(proj / "assets/materials.blend")


def append_weak(proj: Path) -> None:
    directory = str(proj / "assets/materials.blend") + "/Material/"
    bpy.ops.wm.append(directory=directory, filename="Reusable", do_reuse_local_id=True)
    bpy.data.materials["Reusable"].use_fake_user = True


def build_zoo(out: Path) -> list[Path]:
    proj = out / "proj"
    outside = out / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    library = build_library(proj, outside)
    gone = build_gone(proj)
    add_weak_reference(proj)
    scene = empty_file()
    # Append first: appending into an unsaved file turns "//" library paths into broken ones.
    append_weak(proj)
    main = proj / "main.blend"
    save(main)  # point caches on disk can only be turned on in a saved file
    add_images(scene, proj, outside)
    add_sequencer(scene, proj)
    add_modifiers(scene)
    add_nodes(scene, proj)
    add_misc(scene, proj, outside)
    lib = link_objects(library, ["LibPlane", "LibAbsPlane"], scene)
    gone_lib = link_objects(gone, ["GonePlane"], scene)
    lib.filepath = "//lib/library.blend"
    gone_lib.filepath = "//lib/gone.blend"
    save(main)
    gone.unlink()
    return [main, library, proj / "lib/nested/nested.blend"]


# -- the render project --------------------------------------------------------------------------


def build_render(out: Path) -> Path:
    world = out / "world"
    project = world / "project"
    lib_scene = empty_file()
    lib_image = load_image(write_png(project / "libs/tex/lib.png", (255, 40, 40)), "//tex/lib.png")
    textured_plane(lib_scene, "LibPlane", lib_image, (1.1, -1.1, 0.0))
    lib_path = project / "libs/lib.blend"
    save(lib_path)

    scene = empty_file()
    wood = load_image(write_png(project / "shots/textures/wood.png", (200, 150, 100)), "//textures/wood.png")
    shared = load_image(write_png(project / "textures/shared.png", (30, 200, 60)), "//../textures/shared.png")
    absolute_path = write_png(world / "elsewhere/abs.png", (20, 60, 220))
    absolute = load_image(absolute_path, str(absolute_path))
    textured_plane(scene, "Wood", wood, (-1.1, 1.1, 0.0))
    textured_plane(scene, "Shared", shared, (1.1, 1.1, 0.0))
    textured_plane(scene, "Absolute", absolute, (-1.1, -1.1, 0.0))
    link_objects(lib_path, ["LibPlane"], scene).filepath = "//../libs/lib.blend"
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type = "ORTHO"
    camera.data.ortho_scale = 4.4
    camera.location = (0.0, 0.0, 5.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.render.resolution_x = 32
    scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    # Pixels equal to the textures' colours: no view transform, no dithering noise.
    scene.view_settings.view_transform = "Standard"
    scene.render.dither_intensity = 0.0
    scene.render.filepath = "//render/frame_"
    scene.frame_start = scene.frame_end = 1
    main = project / "shots/main.blend"
    save(main, compress=True)
    return main


# -- reports -------------------------------------------------------------------------------------


def describe(path: str) -> dict[str, Any]:
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    except RuntimeError as exc:
        return {"error": str(exc)}
    paths = bpy.utils.blend_paths(absolute=False, local=True)
    indirect = [lib.filepath for lib in bpy.data.libraries if lib.parent is not None]
    every = bpy.utils.blend_paths(absolute=True, local=False)
    return {
        "paths": paths,
        "indirect_libraries": indirect,
        "missing_paths": sorted({p for p in every if "<UDIM>" not in p and not Path(p).exists()}),
        # ID.is_missing is 3.6+; before, a missing library shows in missing_paths only.
        "missing_ids": sorted(
            id_.name
            for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.images)
            for id_ in collection
            if getattr(id_, "is_missing", False)
        ),
    }


def write_report(report_path: Path, files: list[str], extra: dict[str, Any] | None = None) -> None:
    report = {
        "blender_version": list(bpy.app.version),
        "files": {f: describe(f) for f in files},
        **(extra or {}),
    }
    report_path.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")


def main() -> None:
    args = script_args()
    mode = args[0]
    if mode == "zoo":
        out, report = Path(args[1]), Path(args[2])
        files = build_zoo(out)
        write_report(report, [str(f) for f in files])
    elif mode == "report":
        write_report(Path(args[1]), args[2:])
    elif mode == "render":
        print("MAIN", build_render(Path(args[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
