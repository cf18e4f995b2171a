"""Affine (or rigid) registration of a brain MR to the MNI152 template that nilearn ships.

The fixed image is `mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz` (ICBM 2009a nonlinear
symmetric T1, brain only, 1 mm), which nilearn carries inside its wheel and uses for
`nilearn.datasets.load_mni152_template`: nothing is downloaded at run time. nilearn itself is
never imported (it pulls in scikit-learn and pandas, seconds of start-up); only its package folder
is located. The output is on the template's grid, or on a grid with the template's field of view
and another isotropic spacing; the label map follows with the same transform onto the same grid.

What was fitted is recorded in the image's (and label's) metadata under "MedPrepRegistration",
which the JSON sidecar carries, as SUV records its scale factor: the 4x4 RAS-to-RAS matrices in
both directions and the final metric value. RAS-to-RAS matrices stay valid whatever grid later
steps put the image on, unlike voxel-to-voxel ones.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..affine import LPS_FROM_RAS, affine_from_sitk
from ..errors import MedPrepError
from ..volume import Volume
from .grid import centred_affine, to_sitk
from .masks import intensities
from .registry import WORLD_MAP_KEY, register
from .resample import LABEL_INTERPOLATORS, resample_filter

TEMPLATE_NAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
META_KEY = "MedPrepRegistration"
NEEDS = "step 'register_mni' needs the MNI152 template that nilearn ships"
INSTALL_HINT = "pip install nilearn (the template is inside the package; nothing is downloaded)"

# Multi-resolution schedule: shrink factors on the 1 mm template and Gaussian smoothing in mm.
# Coarse levels find the gross pose without being trapped by cortical detail; the last level is
# unsmoothed so the fit uses every edge the template has.
SHRINK_FACTORS = [4, 2, 1]
SMOOTHING_MM = [2.0, 1.0, 0.0]
# The metric's random sample positions come from this fixed seed, so that the same input gives the
# same transform on every run (with the same number of threads: ITK sums per-thread histograms,
# and a different split changes the last digits).
SAMPLING_SEED = 20240611
HISTOGRAM_BINS = 50
# Metric samples are taken within the template brain grown by this margin: the template is brain
# only, and its 78 % of empty background would otherwise take most samples while telling nothing
# but where the brain's outer edge is, which the margin keeps.
MASK_MARGIN_MM = 6.0
# The search stage moves no point by more than this per iteration; the refinement starts with steps
# of REFINE_STEP (in optimiser units scaled to about 1 mm) on the REFINE_LEVELS finest levels.
SEARCH_STEP_MM = 4.0
REFINE_STEP = 1.0
REFINE_LEVELS = 2
# Fewer voxels than this along an axis cannot survive the coarsest shrink with any structure left.
MIN_VOXELS = 8


@dataclass(frozen=True)
class RegisterMniParams:
    transform: str = field(default="affine", metadata={
        "choices": ["rigid", "affine"],
        "help": "rigid: rotation + translation; affine: rigid first, then scaling and shear as well"})
    spacing: Optional[float] = field(default=None, metadata={
        "min": 0.5, "max": 8.0,
        "help": "output voxel size in mm over the template's field of view; empty: the template's 1 mm grid"})
    interpolator: str = field(default="linear", metadata={"choices": ["linear", "bspline"]})
    label_interpolator: str = field(default="nearest", metadata={"choices": LABEL_INTERPOLATORS})
    sampling_percentage: float = field(default=0.05, metadata={
        "min": 0.001, "max": 1.0,
        "help": "fraction of the template grid drawn at random (fixed seed) at each level; "
                "only draws in and near the brain are used"})
    iterations: int = field(default=200, metadata={
        "min": 1, "max": 10000, "help": "maximum optimiser iterations per resolution level and stage"})
    fill: float = field(default=0.0, metadata={"help": "value where the template grid leaves the input image"})


def _nilearn_dir() -> Optional[Path]:
    """nilearn's package folder, found without importing nilearn (None when it is not installed)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def template_path() -> Path:
    """The packaged MNI152 T1 template, or a one-line MedPrepError saying how to get it."""
    package = _nilearn_dir()
    if package is None:
        raise MedPrepError(NEEDS, hint=INSTALL_HINT)
    path = package / "datasets" / "data" / TEMPLATE_NAME
    if not path.is_file():
        raise MedPrepError(f"{NEEDS}, and the installed nilearn lacks it", path,
                           "pip install 'nilearn>=0.10' (the template is inside the package)")
    return path


def _nilearn_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("nilearn")
    except Exception:  # the metadata may be missing in unusual installs; the file name is recorded anyway
        return None


@functools.lru_cache(maxsize=2)
def _template(path: str) -> Tuple[Any, Any]:
    """(template as float32, metric sampling mask) as SimpleITK images; read once per process."""
    import SimpleITK as sitk

    fixed = sitk.ReadImage(path, sitk.sitkFloat32)
    brain = sitk.Cast(fixed > 0, sitk.sitkUInt8)
    radius = [max(1, int(round(MASK_MARGIN_MM / s))) for s in fixed.GetSpacing()]
    mask = sitk.BinaryDilate(brain, radius, sitk.sitkBall)
    return fixed, mask


def _affine_lps(transform: Any) -> np.ndarray:
    """The 4x4 matrix of a linear SimpleITK transform (any kind or composition), from point images.

    Reading it off points is exact for linear transforms and avoids depending on the parameter
    layout and centre convention of each transform class.
    """
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    out = np.eye(4)
    for axis in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[axis] = 1.0
        out[:3, axis] = np.array(transform.TransformPoint(tuple(unit))) - origin
    out[:3, 3] = origin
    return out


def _registration(p: RegisterMniParams, levels: int) -> Any:
    """Mattes mutual information on fixed-seed random samples, over the last `levels` resolution levels."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    # Mutual information, not a squared difference: the input may be T1, T2, FLAIR or PD weighted, and
    # even a T1 has another intensity scale than the template.
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(p.sampling_percentage, SAMPLING_SEED)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(SHRINK_FACTORS[-levels:])
    reg.SetSmoothingSigmasPerLevel(SMOOTHING_MM[-levels:])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _as_transform(kind: str, fitted_lps: np.ndarray, centre: np.ndarray) -> Any:
    """A rigid or affine SimpleITK transform about `centre` equal to (or, for rigid, as near as the
    fitted matrix allows) the 4x4 `fitted_lps`: x -> A (x - c) + c + t."""
    import SimpleITK as sitk

    matrix = fitted_lps[:3, :3]
    if kind == "rigid":
        # The nearest rotation: Euler3DTransform refuses a matrix that rounding left slightly non-orthogonal.
        u, _, vt = np.linalg.svd(matrix)
        matrix = u @ vt
    out = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    out.SetCenter(tuple(centre.tolist()))
    out.SetMatrix(tuple(matrix.ravel().tolist()))
    out.SetTranslation(tuple((fitted_lps[:3, 3] + matrix @ centre - centre).tolist()))
    return out


def fit_transform(fixed: Any, moving: Any, mask: Any, p: RegisterMniParams) -> Tuple[Any, float]:
    """(transform mapping template points to image points, final metric value), both LPS as ITK works.

    Two stages, because no single SimpleITK optimiser both finds the pose and converges tightly:

    1. Search, rigid, over all levels: gradient descent whose learning rate is re-estimated at every
       iteration so that no point moves more than SEARCH_STEP_MM. Steps stay large however flat the
       coarse metric is (in trials it pulled in 20-25 degrees about two axes plus 25 mm), but they
       never shrink either, so it ends wandering within a step of the optimum.
    2. Refine, rigid or affine, on the two finest levels: regular-step gradient descent, which halves
       its step whenever the gradient turns back, and so settles to a small fraction of a millimetre.

    The search is rigid even for an affine result: from a centre-of-mass start, letting 12 parameters
    move at once lets scaling and shear absorb a rotation the coarse levels have not resolved yet, a
    local minimum that 6 parameters cannot fall into. The affine refinement then only fits size and
    shape from a correct pose (with a known 9 degree, 10 mm, 5 % scaled misalignment, a single
    gradient-descent stage ended 1-5 mm off, search + refine 0.3 mm).
    """
    import SimpleITK as sitk

    rigid = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    centre = np.array(rigid.GetCenter())
    search = _registration(p, len(SHRINK_FACTORS))
    search.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=p.iterations,
                                         convergenceMinimumValue=1e-6, convergenceWindowSize=10,
                                         estimateLearningRate=search.EachIteration,
                                         maximumStepSizeInPhysicalUnits=SEARCH_STEP_MM)
    # Rotations (radians), matrix entries and translations (mm) differ by orders of magnitude in how far
    # a unit change moves the image: weigh each by the physical shift it causes, as ITK recommends.
    search.SetOptimizerScalesFromPhysicalShift()
    search.SetMetricFixedMask(mask)
    search.SetInitialTransform(rigid, inPlace=True)
    # Read the result off points rather than its class, which SimpleITK versions return differently.
    posed = _affine_lps(search.Execute(fixed, moving))

    refine = _registration(p, REFINE_LEVELS)
    refine.SetOptimizerAsRegularStepGradientDescent(learningRate=REFINE_STEP, minStep=1e-3,
                                                    numberOfIterations=p.iterations, relaxationFactor=0.5,
                                                    gradientMagnitudeTolerance=1e-8)
    refine.SetOptimizerScalesFromPhysicalShift()
    refine.SetMetricFixedMask(mask)
    refine.SetInitialTransform(_as_transform(p.transform, posed, centre), inPlace=True)
    result = refine.Execute(fixed, moving)
    return result, float(refine.GetMetricValue())


def output_grid(fixed: Any, spacing: Optional[float]) -> Tuple[List[int], np.ndarray]:
    """(size along x, y, z; RAS affine): the template's grid, or its field of view at `spacing` mm."""
    size = list(fixed.GetSize())
    affine = affine_from_sitk(fixed.GetOrigin(), fixed.GetSpacing(), fixed.GetDirection())
    if spacing is None:
        return size, affine
    old = np.array(fixed.GetSpacing())
    new_size = np.maximum(1, np.rint(np.array(size) * old / spacing))
    return [int(n) for n in new_size], centred_affine(affine, size, [spacing] * 3, new_size)


def _resample(array: np.ndarray, affine: np.ndarray, transform: Any, size: List[int], out_affine: np.ndarray,
              interpolator: str, fill: float, out_dtype: Optional[np.dtype]) -> np.ndarray:
    import SimpleITK as sitk

    f = resample_filter(size, out_affine, interpolator, fill, out_dtype)
    f.SetTransform(transform)
    return sitk.GetArrayFromImage(f.Execute(to_sitk(array, affine)))


def _check_input(image: Volume) -> None:
    if image.is_4d:
        raise MedPrepError("step 'register_mni' works on 3D images, this one is 4D",
                           hint="split the time series first, or register one volume of it")
    if min(image.array.shape) < MIN_VOXELS:
        raise MedPrepError(f"step 'register_mni' needs a 3D brain volume, this one is {image.shape_xyz} voxels",
                           hint=f"give at least {MIN_VOXELS} voxels along every axis")
    if image.is_sheared:
        raise MedPrepError("step 'register_mni' cannot use a sheared (gantry-tilted) volume",
                           hint="convert with `medprep convert --tilt-correct` and use the _Tilt volume")


@register("register_mni", RegisterMniParams, spatial=True)
def register_mni(image: Volume, label: Optional[Volume], p: RegisterMniParams) -> Tuple[Volume, Optional[Volume]]:
    """Rigid or affine registration of a brain MR to nilearn's MNI152 template; the label map follows."""
    _check_input(image)
    path = template_path()
    fixed, mask = _template(str(path))
    values = intensities(image).astype(np.float32, copy=False)
    transform, metric = fit_transform(fixed, to_sitk(values, image.affine), mask, p)

    size, out_affine = output_grid(fixed, p.spacing)
    array = _resample(values, image.affine, transform, size, out_affine, p.interpolator, p.fill,
                      np.dtype(np.float32))
    template_to_image = LPS_FROM_RAS @ _affine_lps(transform) @ LPS_FROM_RAS
    record: Dict[str, Any] = {
        "template": TEMPLATE_NAME, "nilearn": _nilearn_version(), "transform": p.transform,
        "metric": "mattes_mutual_information", "metric_value": metric,
        "image_to_template_ras": np.round(np.linalg.inv(template_to_image), 8).tolist(),
        "template_to_image_ras": np.round(template_to_image, 8).tolist(),
    }
    out = image.with_values(array, out_affine)
    out.meta[META_KEY] = record
    out.meta[WORLD_MAP_KEY] = np.linalg.inv(template_to_image).tolist()  # image world -> template world
    if label is None:
        return out, None
    larray = _resample(label.array, image.affine, transform, size, out_affine, p.label_interpolator, 0.0, None)
    olabel = label.with_stored(larray, out_affine.copy())
    olabel.meta[META_KEY] = dict(record)
    return out, olabel
