# Finds every library cparsl builds on, now or in a later layer, so that
# layers add code and not plumbing.  A missing one stops configure naming
# the Debian package that provides it (scripts/deps installs them all).

find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

function(cparsl_require_pkg var module debpkg)
  pkg_check_modules(${var} IMPORTED_TARGET ${module})
  if(NOT ${var}_FOUND)
    message(FATAL_ERROR
      "${module} not found: apt-get install ${debpkg} (or run scripts/deps)")
  endif()
endfunction()

cparsl_require_pkg(YAML yaml-0.1 libyaml-dev)
cparsl_require_pkg(HWLOC hwloc libhwloc-dev)
cparsl_require_pkg(FABRIC libfabric libfabric-dev)
cparsl_require_pkg(XXHASH libxxhash libxxhash-dev)
cparsl_require_pkg(CRYPTO libcrypto libssl-dev)

find_package(MPI COMPONENTS C)
if(NOT MPI_C_FOUND)
  message(FATAL_ERROR
    "MPI (C) not found: apt-get install libopenmpi-dev openmpi-bin")
endif()

# The serial HDF5 build: the MPI-IO build cannot write in SWMR mode.
set(HDF5_PREFER_PARALLEL OFF)
find_package(HDF5 COMPONENTS C)
if(NOT HDF5_FOUND)
  message(FATAL_ERROR "HDF5 not found: apt-get install libhdf5-dev")
endif()
if(HDF5_IS_PARALLEL)
  message(FATAL_ERROR
    "found the parallel HDF5 build (${HDF5_C_LIBRARIES}); cparsl needs "
    "the serial one: apt-get install libhdf5-dev")
endif()

find_package(Threads REQUIRED)
