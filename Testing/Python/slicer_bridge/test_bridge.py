"""MedPrepBridge against real MRML: volume nodes <-> Volume / SimpleITK, compared with Slicer's own readers."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import MedPrepSample as sample
from MedPrepLib.errors import MedPrepError
from MedPrepLib.volume import Volume

vtk = pytest.importorskip("vtk", reason="vtk is not installed: it comes with slicer-core (`make test-slicer`)")

# An oblique, anisotropic geometry: every axis mixes, so any transposition or sign error shows.
ANGLE = 0.4
ROW_DIR = (np.cos(ANGLE), np.sin(ANGLE), 0.0)
COL_DIR = (0.0, 0.0, -1.0)
SPACING = (0.8, 0.9, 2.5)
ORIGIN_LPS = (10.0, -20.0, 30.0)


def matrix(node, getter: str) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    getattr(node, getter)(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def expected_ijk_to_ras() -> np.ndarray:
    """IJKToRAS from first principles: DICOM row/column cosines and spacing in LPS, flipped to RAS."""
    row, col = np.array(ROW_DIR), np.array(COL_DIR)
    lps = np.eye(4)
    lps[:3, 0] = row * SPACING[0]
    lps[:3, 1] = col * SPACING[1]
    lps[:3, 2] = np.cross(row, col) * SPACING[2]
    lps[:3, 3] = ORIGIN_LPS
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def slicer_dicom_load(slicer, scene, paths):
    """What DICOMScalarVolumePlugin does: the archetype reader over the series' file list."""
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    files = vtk.vtkStringArray()
    for p in paths:
        files.InsertNextValue(str(p))
    node = logic.AddArchetypeScalarVolume(str(paths[0]), "slicer-dicom", 0, files)
    assert node is not None, "Slicer's archetype reader could not read the series"
    return node


def slicer_file_load(slicer, scene, path):
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    return logic.AddArchetypeScalarVolume(str(path), "slicer-file", 0, None)


@pytest.fixture
def oblique_ct(tmp_path):
    hu = (np.arange(4 * 5 * 6).reshape(4, 5, 6) * 7 - 300).astype(np.float32)
    paths = sample.write_series(tmp_path / "dicom", hu, spacing=SPACING, origin_lps=ORIGIN_LPS,
                                row_dir=ROW_DIR, col_dir=COL_DIR, intercept=-1024.0)
    return hu, paths


def test_dicom_geometry_matches_slicer_dicom_loading(slicer, scene, bridge, oblique_ct):
    convert = pytest.importorskip("MedPrepLib.convert", reason="MedPrepLib.convert has not landed yet")
    hu, paths = oblique_ct
    reference = slicer_dicom_load(slicer, scene, paths)
    (volume,) = convert.read_dicom(paths[0].parent)
    ours = bridge.addVolumeNode(scene, volume, "medprep")

    np.testing.assert_allclose(matrix(reference, "GetIJKToRASMatrix"), expected_ijk_to_ras(), atol=1e-6)
    np.testing.assert_allclose(matrix(ours, "GetIJKToRASMatrix"), matrix(reference, "GetIJKToRASMatrix"),
                               atol=1e-5)
    np.testing.assert_allclose(ours.GetSpacing(), reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetOrigin(), reference.GetOrigin(), atol=1e-5)
    assert ours.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions()
    np.testing.assert_array_equal(bridge.volumeFromNode(ours).array, bridge.volumeFromNode(reference).array)
    # Both give HU as short, not float, as users of Slicer's DICOM module expect.
    assert ours.GetImageData().GetScalarType() == reference.GetImageData().GetScalarType() == vtk.VTK_SHORT
    np.testing.assert_array_equal(bridge.volumeFromNode(ours).array, hu)


def test_volume_to_node_sets_ijk_to_ras_spacing_origin_directions(scene, bridge):
    affine = expected_ijk_to_ras()
    array = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    node = bridge.addVolumeNode(scene, Volume(array, affine), "oblique")

    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_allclose(matrix(node, "GetIJKToRASMatrix"), affine, atol=1e-9)
    np.testing.assert_allclose(node.GetSpacing(), SPACING, atol=1e-9)
    np.testing.assert_allclose(node.GetOrigin(), [-ORIGIN_LPS[0], -ORIGIN_LPS[1], ORIGIN_LPS[2]], atol=1e-9)
    np.testing.assert_allclose(matrix(node, "GetIJKToRASDirectionMatrix")[:3, :3],
                               affine[:3, :3] / np.array(SPACING), atol=1e-9)
    assert node.GetImageData().GetDimensions() == (5, 4, 3)
    # vtkImageData is x-fastest: voxel (i=4, j=1, k=2) is array[2, 1, 4].
    assert node.GetImageData().GetScalarComponentAsDouble(4, 1, 2, 0) == array[2, 1, 4]
    assert node.GetDisplayNode() is not None

    back = bridge.volumeFromNode(node)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine, atol=1e-9)


def test_sitk_images_match_slicer_file_reader(slicer, scene, bridge, tmp_path):
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 900, (4, 5, 6)).astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN_LPS)
    row, col = np.array(ROW_DIR), np.array(COL_DIR)
    image.SetDirection(tuple(np.column_stack([row, col, np.cross(row, col)]).ravel()))
    sitk.WriteImage(image, str(tmp_path / "image.nrrd"))

    reference = slicer_file_load(slicer, scene, tmp_path / "image.nrrd")
    ours = bridge.addVolumeNodeFromImage(scene, image, "from-sitk")
    np.testing.assert_allclose(matrix(ours, "GetIJKToRASMatrix"), matrix(reference, "GetIJKToRASMatrix"),
                               atol=1e-6)

    pulled = bridge.imageFromNode(reference)
    np.testing.assert_allclose(pulled.GetOrigin(), ORIGIN_LPS, atol=1e-6)
    np.testing.assert_allclose(pulled.GetSpacing(), SPACING, atol=1e-6)
    np.testing.assert_allclose(pulled.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(pulled), sitk.GetArrayFromImage(image))


def test_label_maps_become_label_map_nodes_with_small_integer_voxels(scene, bridge):
    labels = np.zeros((3, 4, 5), dtype=np.float32)
    labels[1, 1:3, 2:4] = 2
    labels[2, 0, 0] = 7
    node = bridge.addVolumeNode(scene, Volume(labels, expected_ijk_to_ras()), "labels", labelmap=True)

    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetImageData().GetScalarType() == vtk.VTK_UNSIGNED_CHAR
    assert node.GetDisplayNode().IsA("vtkMRMLLabelMapVolumeDisplayNode")
    np.testing.assert_allclose(matrix(node, "GetIJKToRASMatrix"), expected_ijk_to_ras(), atol=1e-9)
    np.testing.assert_array_equal(bridge.volumeFromNode(node).array, labels.astype(np.uint8))

    wide = Volume(np.full((1, 2, 2), 300, dtype=np.int32), np.eye(4))
    assert bridge.addVolumeNode(scene, wide, "wide", labelmap=True).GetImageData().GetScalarType() == vtk.VTK_SHORT


def test_fractional_labels_are_refused_and_leave_no_node(scene, bridge):
    before = scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode")
    with pytest.raises(MedPrepError, match="whole numbers"):
        bridge.addVolumeNode(scene, Volume(np.full((1, 2, 2), 0.5, np.float32), np.eye(4)), "bad", labelmap=True)
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == before


def test_rescale_gives_short_for_integral_and_float_otherwise(scene, bridge):
    stored = np.array([[[0, 1024, 4095]]], dtype=np.uint16)
    ct = bridge.addVolumeNode(scene, Volume(stored, np.eye(4), slope=1.0, inter=-1024.0), "ct")
    assert ct.GetImageData().GetScalarType() == vtk.VTK_SHORT
    np.testing.assert_array_equal(bridge.volumeFromNode(ct).array, [[[-1024, 0, 3071]]])

    pet = bridge.addVolumeNode(scene, Volume(stored, np.eye(4), slope=0.25, inter=0.0), "pet")
    assert pet.GetImageData().GetScalarType() == vtk.VTK_FLOAT
    np.testing.assert_allclose(bridge.volumeFromNode(pet).array, [[[0.0, 256.0, 1023.75]]])


def test_sheared_geometry_survives_the_round_trip(scene, bridge):
    tilted = np.array([[0.7, 0, 0, -10], [0, 0.7, 0.3, 20], [0, 0, 2.5, 30], [0, 0, 0, 1.0]])
    node = bridge.addVolumeNode(scene, Volume(np.zeros((2, 2, 2), np.int16), tilted), "tilted")
    np.testing.assert_allclose(bridge.volumeFromNode(node).affine, tilted, atol=1e-9)


def test_linear_parent_transform_is_folded_in_and_non_linear_refused(slicer, scene, bridge):
    node = bridge.addVolumeNode(scene, Volume(np.zeros((2, 2, 2), np.int16), np.eye(4)), "moved")
    transformNode = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 5.0)
    transformNode.SetMatrixTransformToParent(shift)
    node.SetAndObserveTransformNodeID(transformNode.GetID())
    np.testing.assert_allclose(bridge.volumeFromNode(node).affine[:3, 3], [5.0, 0.0, 0.0])

    warp = scene.AddNewNodeByClass("vtkMRMLTransformNode")
    warp.SetAndObserveTransformToParent(vtk.vtkThinPlateSplineTransform())
    node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(ValueError, match="non-linear"):
        bridge.volumeFromNode(node)


def test_4d_volumes_are_refused(scene, bridge):
    with pytest.raises(ValueError, match="4D"):
        bridge.addVolumeNode(scene, Volume(np.zeros((2, 2, 2, 2), np.int16), np.eye(4)), "4d")


def test_stored_values_come_back_exactly_for_medpreplib_steps(scene, bridge):
    stored = np.array([[[0, 1024, 4095]]], dtype=np.uint16)
    ct = Volume(stored, np.eye(4), slope=1.0, inter=-1024.0)
    node = bridge.addVolumeNode(scene, ct, "ct")
    back = bridge.volumeFromNode(node, stored=bridge.storedRescale(ct))
    assert back.array.dtype == np.uint16 and (back.slope, back.inter) == (1.0, -1024.0)
    np.testing.assert_array_equal(back.array, stored)
    np.testing.assert_array_equal(back.scaled(), ct.scaled())

    # Voxels edited beyond what the stored type holds stay real-world values rather than wrapping around.
    node.GetImageData().GetPointData().GetScalars().SetValue(0, -2000)
    edited = bridge.volumeFromNode(node, stored=bridge.storedRescale(ct))
    assert (edited.slope, edited.inter) == (1.0, 0.0) and edited.array[0, 0, 0] == -2000

    pet = Volume(stored, np.eye(4), slope=0.25, inter=0.0)
    node = bridge.addVolumeNode(scene, pet, "pet")
    np.testing.assert_array_equal(bridge.volumeFromNode(node, stored=bridge.storedRescale(pet)).scaled(),
                                  pet.scaled(np.float32))


def test_rgb_volumes_become_vector_nodes_and_come_back_unchanged(scene, bridge):
    from MedPrepLib.volume import RGB24, Volume

    array = np.random.default_rng(2).integers(0, 256, size=(2, 3, 4, 3)).astype(np.uint8).view(RGB24)[..., 0]
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    node = bridge.addVolumeNode(scene, Volume(array=array, affine=affine), "colour")
    assert node.IsA("vtkMRMLVectorVolumeNode") and node.GetImageData().GetNumberOfScalarComponents() == 3
    back = bridge.volumeFromNode(node)
    assert back.is_rgb and np.array_equal(back.array, array)
    np.testing.assert_allclose(back.affine, affine)
    with pytest.raises(ValueError, match="label map"):
        bridge.addVolumeNode(scene, Volume(array=array, affine=affine), "colour", labelmap=True)
