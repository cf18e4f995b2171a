"""Volume nodes <-> MedPrepLib Volumes (and, through `Volume.to_sitk`/`from_sitk`, SimpleITK images).

Why the panel loads DICOM through MedPrepLib and this bridge instead of Slicer's DICOM module: the
volume that is previewed, preprocessed and saved must be the very one `medprep convert` and
`medprep run` produce from the same files (same slice sorting, rescale, geometry checks and
warnings); loading through DICOMScalarVolumePlugin would show a second reading of the data.

Why it matches Slicer's DICOM loading: DICOMScalarVolumePlugin reads a series with
vtkITKArchetypeImageSeriesScalarReader, i.e. ITK's LPS geometry turned into RAS by negating the
first two axes. A Volume's affine is the NIfTI one, voxel (i = column, j = row, k = slice) to
RAS, which is that same matrix, so it becomes the node's IJKToRAS unchanged, and the voxel array
(z, y, x), x fastest, is the memory layout of vtkImageData. Testing/Python/slicer_bridge/ checks this
against Slicer's own reader from the slicer-core wheel.

Only vtk, numpy and the MRML classes are needed here, so this module runs outside the application.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import vtk
from vtk.util import numpy_support

from MedPrepLib.affine import axis_directions, voxel_spacing
from MedPrepLib.errors import MedPrepError
from MedPrepLib.labels import label_volume
from MedPrepLib.volume import RGB24, Volume


def _matrixFromArray(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for col in range(4):
            matrix.SetElement(row, col, float(array[row, col]))
    return matrix


def _arrayFromMatrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


def realWorldArray(volume: Volume) -> np.ndarray:
    """Voxel values after slope and intercept, kept integer when the rescale is integral.

    Slicer's DICOM reader gives CT as short (HU), not float; doing the same keeps memory, the
    data probe and saved files as users know them.
    """
    if volume.slope == 1.0 and volume.inter == 0.0:
        return volume.array
    values = volume.integer_values((np.int16, np.int32))
    return volume.scaled(np.float32) if values is None else values


def updateNodeFromVolume(node, volume: Volume) -> None:
    """Replace the voxels and geometry of a scalar or label map volume node with `volume`'s.

    A sheared affine (gantry tilt) is stored as it is: Slicer reslices with the full IJKToRAS
    matrix, so the slices are shown where they were acquired.
    """
    if volume.is_4d:
        raise ValueError("a 4D (time series) volume does not fit a scalar volume node; split it into 3D volumes")
    if volume.is_rgb != bool(node.IsA("vtkMRMLVectorVolumeNode")):
        raise ValueError("a colour (RGB) volume needs a vector volume node, a grey-value one a scalar node")
    if volume.is_rgb:
        array = volume.array  # three uint8 components per voxel, as Slicer's DICOM reader gives colour
    elif node.IsA("vtkMRMLLabelMapVolumeNode"):
        array = label_volume(volume).array
    else:
        array = realWorldArray(volume)
    array = np.ascontiguousarray(array)
    nz, ny, nx = array.shape
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(nx, ny, nz)
    flat = array.view(np.uint8).reshape(-1, 3) if volume.is_rgb else array.reshape(-1)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True)
    scalars.SetName("ImageScalars")
    imageData.GetPointData().SetScalars(scalars)
    wasModifying = node.StartModify()
    node.SetIJKToRASMatrix(_matrixFromArray(volume.affine))
    node.SetAndObserveImageData(imageData)
    node.EndModify(wasModifying)


def addVolumeNode(scene, volume: Volume, name: str, labelmap: bool = False):
    """A new vtkMRMLScalarVolumeNode (vtkMRMLLabelMapVolumeNode, or vtkMRMLVectorVolumeNode for an
    RGB colour volume) in `scene` holding `volume`."""
    if volume.is_rgb and labelmap:
        raise ValueError("a colour (RGB) volume cannot be a label map")
    className = ("vtkMRMLLabelMapVolumeNode" if labelmap else
                 "vtkMRMLVectorVolumeNode" if volume.is_rgb else "vtkMRMLScalarVolumeNode")
    node = scene.AddNewNodeByClass(className, name)
    try:
        updateNodeFromVolume(node, volume)
    except (ValueError, MedPrepError):
        scene.RemoveNode(node)
        raise
    node.CreateDefaultDisplayNodes()
    return node


def storedRescale(volume: Volume) -> dict[str, Any]:
    """What `volumeFromNode` needs to give back the stored values of a volume shown as real-world values."""
    return {"dtype": volume.array.dtype.str, "slope": float(volume.slope), "inter": float(volume.inter)}


def _restoreStored(array: np.ndarray, stored: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """Stored values and rescale from real-world integers, when they invert exactly.

    MedPrepLib steps then see the very array a DICOM read gives, so a pipeline run in Slicer and
    by `medprep run` computes the same numbers (dtype included).
    """
    slope, inter, dtype = stored["slope"], stored["inter"], np.dtype(stored["dtype"])
    if (slope, inter) == (1.0, 0.0) or array.dtype.kind not in "iu" or dtype.kind not in "iu" \
            or not (slope.is_integer() and inter.is_integer()):
        return array, 1.0, 0.0
    shifted = array.astype(np.int64) - int(inter)
    values, remainder = np.divmod(shifted, int(slope))
    info = np.iinfo(dtype)
    if remainder.any() or (values.size and (values.min() < info.min or values.max() > info.max)):
        return array, 1.0, 0.0  # edited beyond what the stored type holds: keep real-world values
    return values.astype(dtype), slope, inter


def volumeFromNode(node, meta: dict | None = None, stored: dict[str, Any] | None = None) -> Volume:
    """The node's voxels and world geometry as a Volume (a copy: later edits of either are independent).

    `stored` (from `storedRescale` of the volume the node was made from) brings back the stored
    values and rescale instead of the real-world integers the node shows.
    A linear parent transform is folded into the affine, as Slicer does when it exports a node;
    a non-linear one cannot be represented by an affine and is refused.
    """
    imageData = node.GetImageData()
    if imageData is None:
        raise ValueError(f"volume node '{node.GetName()}' has no image data")
    components = imageData.GetNumberOfScalarComponents()
    nx, ny, nz = imageData.GetDimensions()
    values = numpy_support.vtk_to_numpy(imageData.GetPointData().GetScalars())
    if components == 3 and values.dtype == np.uint8:
        array = np.ascontiguousarray(values).copy().view(RGB24).reshape(nz, ny, nx)
    elif components != 1:
        raise ValueError(f"volume node '{node.GetName()}' has {components} components per voxel; only "
                         "scalar volumes and 8-bit RGB colour volumes are supported")
    else:
        array = values.reshape(nz, ny, nx).copy()
    ijkToRas = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijkToRas)
    affine = _arrayFromMatrix(ijkToRas)
    transformNode = node.GetParentTransformNode()
    if transformNode is not None:
        if not transformNode.IsTransformToWorldLinear():
            raise ValueError(f"volume node '{node.GetName()}' is under a non-linear transform; harden it first")
        toWorld = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformToWorld(toWorld)
        affine = _arrayFromMatrix(toWorld) @ affine
    slope, inter = 1.0, 0.0
    if stored:
        array, slope, inter = _restoreStored(array, stored)
    return Volume(array=array, affine=affine, slope=slope, inter=inter, meta=dict(meta or {}))


def imageFromNode(node):
    """The node as a SimpleITK image (LPS geometry, as sitkUtils.PullVolumeFromSlicer gives)."""
    return volumeFromNode(node).to_sitk()


def addVolumeNodeFromImage(scene, image, name: str, labelmap: bool = False):
    """A new volume node holding a 3D SimpleITK image."""
    return addVolumeNode(scene, Volume.from_sitk(image), name, labelmap=labelmap)


def addBoxNodes(scene, boxes: list, affine: np.ndarray, name: str = "box") -> list:
    """Boxes and points (as `MedPrepLib.boxes.transform_boxes` gives them, in a volume's pixels) as
    Markups on that volume: a box is a vtkMRMLMarkupsROINode oriented along the volume's axes (an
    oblique volume's box stays its box), a point a vtkMRMLMarkupsFiducialNode. Dropped boxes are left
    out. `affine` is the volume's IJKToRAS (a Volume's affine)."""
    affine = np.asarray(affine, float)
    spacing = voxel_spacing(affine)
    axes = np.eye(4)
    axes[:3, :3] = axis_directions(affine)  # the volume's axis directions in RAS
    nodes = []
    for index, box in enumerate(boxes):
        if box["status"] == "dropped":
            continue
        pixels = np.asarray(box["pixels"], float)
        lo, hi = pixels[:3], pixels[3:]
        label = f"{name}{index + 1} {box['category']}"
        if box["kind"] == "point":
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", label)
            # pixel i spans [i, i + 1): continuous pixel coordinate c is at voxel index c - 0.5
            node.AddControlPoint(vtk.vtkVector3d(*(affine @ np.r_[lo - 0.5, 1.0])[:3]), box["category"])
        else:
            node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", label)
            node.SetAndObserveObjectToNodeMatrix(_matrixFromArray(axes))
            node.SetCenter(*(affine @ np.r_[(lo + hi) / 2 - 0.5, 1.0])[:3])
            node.SetSize(*((hi - lo) * spacing))
        nodes.append(node)
    return nodes


def boxesFromNodes(nodes: list, affine: np.ndarray) -> list:
    """ROI and fiducial nodes as MedPrepLib boxes and points in the pixels of the volume with IJKToRAS
    `affine`: an ROI becomes the axis-aligned box (in the volume's pixels) of its eight corners."""
    from MedPrepLib.boxes import Box

    toIndex = np.linalg.inv(np.asarray(affine, float))
    boxes = []
    for node in nodes:
        name = node.GetName()
        if node.IsA("vtkMRMLMarkupsROINode"):
            matrix = _arrayFromMatrix(node.GetObjectToNodeMatrix())
            half = np.array(node.GetSize()) / 2
            corners = np.array([(matrix @ np.r_[np.array(signs) * half, 1.0])[:3]
                                for signs in itertools.product((-1, 1), repeat=3)])
            pixels = (toIndex[:3, :3] @ corners.T).T + toIndex[:3, 3] + 0.5
            boxes.append(Box(tuple(pixels.min(0)), tuple(pixels.max(0)), name))
        elif node.IsA("vtkMRMLMarkupsFiducialNode"):
            for i in range(node.GetNumberOfControlPoints()):
                position = [0.0, 0.0, 0.0]
                node.GetNthControlPointPosition(i, position)
                pixel = tuple((toIndex @ np.r_[position, 1.0])[:3] + 0.5)
                boxes.append(Box(pixel, pixel, node.GetNthControlPointLabel(i) or name))
    return boxes
