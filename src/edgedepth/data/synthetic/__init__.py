"""Synthetic indoor scenes with exact depth: a small vectorised ray caster in NumPy, no OpenGL and no GPU.

A scene is a room (floor, four walls, ceiling) with procedural textures, furniture-like boxes, cylinders and
spheres, one or two point lights plus ambient, optional cast shadows, seen by a pinhole camera whose
horizontal field of view is near NYU's Kinect (about 58 degrees). The image gets mild vignetting and sensor
noise; the depth is exact.

Conventions, one place for each:

* World: metres, ``z`` up; the room is the axis-aligned box ``[low, high]``, floor at ``low[2]``.
* Camera: OpenCV pinhole, ``x`` right, ``y`` down, ``z`` forward; pixel (row ``i``, column ``j``) has its
  centre at ``(x, y) = (j, i)``, so ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` back-projects the depth.
* Depth: the **z-distance along the optical axis** in metres (NYU's convention), *not* the length of the ray:
  a camera facing a wall 3 m away sees 3.0 in every pixel, corners included. The ray of pixel ``(x, y)`` is
  cast as ``((x - cx) / fx, (y - cy) / fy, 1)`` in camera coordinates, so the ray parameter of a hit *is* its
  depth, with no conversion anywhere.
* ``raw_depth`` is ``depth`` with Kinect-like holes set to 0: too far or too near for the sensor, grazing
  incidence, dark (IR-absorbing) materials and specular highlights.

A folder written by :func:`write_folder` holds ``<key>.jpg`` (RGB) beside ``<key>.png`` (exact depth, uint16
millimetres, 0 = invalid): the seed's own layout for its Places data, so the training reader and the oracle
teacher read it as they read any ``<name>.jpg`` / ``<name>.png`` pair. Scene ``k`` of a folder made with seed
``S`` is ``render_scene(scene_seed(S, k))`` whatever the count, and folders with different seeds share no scene.

The modules, in the order a scene is made: ``scene`` (the description: room, solids, materials, lights, camera),
``raycast`` (intersections and surface frames), ``textures``, ``rendering`` (shading, shadows, the sensor),
``rooms`` (random rooms and scene ``k`` of a seed), ``writers`` (folders, NYU's ``.mat`` pair and Marigold's NYU
tar) and ``sequence`` (a camera moving through one room). What other packages use is exported here.
"""

from edgedepth.data.synthetic.rendering import LIGHT_RANGE, RAW_MAX_DEPTH, RAW_MIN_INCIDENCE_COS, render
from edgedepth.data.synthetic.rooms import HFOV_RANGE, random_scene, render_scene, scene_camera, scene_seed
from edgedepth.data.synthetic.scene import (
    Box,
    Camera,
    Cylinder,
    Light,
    Material,
    Room,
    Scene,
    SceneDescription,
    Sphere,
    rotation_matrix,
)
from edgedepth.data.synthetic.sequence import (
    SEQUENCE_DEPTH,
    SEQUENCE_FPS,
    SEQUENCE_HEIGHT_RANGE,
    SEQUENCE_SPEED,
    SEQUENCE_VIDEO,
    sequence_cameras,
    write_sequence,
)
from edgedepth.data.synthetic.writers import (
    CAMERAS_NAME,
    GENERATOR_VERSION,
    INDEX_NAME,
    depth_to_png16,
    scene_key,
    write_folder,
    write_nyu_tar,
)

__all__ = [
    "CAMERAS_NAME", "GENERATOR_VERSION", "HFOV_RANGE", "INDEX_NAME", "LIGHT_RANGE", "RAW_MAX_DEPTH",
    "RAW_MIN_INCIDENCE_COS", "SEQUENCE_DEPTH", "SEQUENCE_FPS", "SEQUENCE_HEIGHT_RANGE", "SEQUENCE_SPEED",
    "SEQUENCE_VIDEO", "Box", "Camera", "Cylinder", "Light", "Material", "Room", "Scene", "SceneDescription", "Sphere",
    "depth_to_png16", "random_scene", "render", "render_scene", "rotation_matrix", "scene_camera", "scene_key",
    "scene_seed", "sequence_cameras", "write_folder", "write_nyu_tar", "write_sequence",
]
