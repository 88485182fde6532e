# Tests that run the examples (../examples) and check their answers.
# Included from tests/CMakeLists.txt.  Each example runs in a fresh scratch
# directory (its run dir and output files land there) through
# check_example.sh, which checks the exit status as well as the output.

set(CPARSL_EXAMPLE_CHECK ${CMAKE_CURRENT_LIST_DIR}/check_example.sh)
# The sanitizer options come from tests/CMakeLists.txt when it set them.
if(DEFINED CPARSL_TEST_ENV)
  set(CPARSL_EXAMPLE_ENV "${CPARSL_TEST_ENV}")
else()
  set(CPARSL_EXAMPLE_ENV "CPARSL_DEBUG_CHECK=1")
endif()

function(cparsl_example_test name mode target)
  add_test(NAME ${name}
    COMMAND ${CPARSL_BASH} ${CPARSL_EXAMPLE_CHECK} ${mode}
            $<TARGET_FILE:${target}> ${ARGN})
  set_tests_properties(${name} PROPERTIES TIMEOUT 120
    ENVIRONMENT "${CPARSL_EXAMPLE_ENV}")
endfunction()

find_program(CPARSL_BASH bash)
if(CPARSL_BASH)
  cparsl_example_test(example.hello hello hello)
  cparsl_example_test(example.monte_carlo monte_carlo monte_carlo 20000)
  cparsl_example_test(example.bash_pipeline bash_pipeline bash_pipeline)
  cparsl_example_test(example.sort_numbers sort_numbers sort_numbers)
  cparsl_example_test(example.sort_numbers_bad sort_numbers_bad
                      sort_numbers)
  # The same on htex on its own: 2 manager processes join the client's
  # interchange over libfabric (tests/htex.yaml).
  foreach(ex hello monte_carlo bash_pipeline sort_numbers)
    set(extra)
    if(ex STREQUAL "monte_carlo")
      set(extra 20000)
    endif()
    add_test(NAME htex.example.${ex}
      COMMAND ${CPARSL_BASH} ${CPARSL_EXAMPLE_CHECK} ${ex}
              $<TARGET_FILE:${ex}> ${extra})
    set_tests_properties(htex.example.${ex} PROPERTIES TIMEOUT 120
      ENVIRONMENT "${CPARSL_EXAMPLE_ENV};CPARSL_CONFIG=${CMAKE_CURRENT_LIST_DIR}/htex.yaml;CPARSL_EXPECT_LAYOUT=2 joined, 0 refused")
  endforeach()
else()
  message(STATUS "bash not found: example tests not registered")
endif()

# The same seed workflows as one MPI job of 4 ranks (rank 0 the client,
# ranks 1-3 worker ranks): the answers must not change.
if(CPARSL_BASH AND CPARSL_MPI_TESTS)
  string(REPLACE ";" " " cparsl_launch_str
         "${CPARSL_MPIEXEC};${MPIEXEC_NUMPROC_FLAG};4")
  foreach(ex hello monte_carlo bash_pipeline sort_numbers sort_numbers_bad)
    set(target ${ex})
    if(ex STREQUAL "sort_numbers_bad")
      set(target sort_numbers)
    endif()
    set(extra)
    if(ex STREQUAL "monte_carlo")
      set(extra 20000)
    endif()
    add_test(NAME mpi.example.${ex}
      COMMAND ${CPARSL_BASH} ${CPARSL_EXAMPLE_CHECK} ${ex}
              $<TARGET_FILE:${target}> ${extra})
    set_tests_properties(mpi.example.${ex} PROPERTIES TIMEOUT 180
      LABELS mpi RUN_SERIAL TRUE
      ENVIRONMENT "${CPARSL_MPI_TEST_ENV};CPARSL_LAUNCH=${cparsl_launch_str}")
  endforeach()

  # The same workflows behind sub-interchanges: 8 ranks as 4 emulated
  # nodes, 2 to a tier (tests/tiers.yaml).
  string(REPLACE ";" " " launch8
         "${CPARSL_MPIEXEC};${MPIEXEC_NUMPROC_FLAG};8")
  foreach(ex hello monte_carlo bash_pipeline sort_numbers)
    set(extra)
    if(ex STREQUAL "monte_carlo")
      set(extra 20000)
    endif()
    add_test(NAME mpi.tiers.example.${ex}
      COMMAND ${CPARSL_BASH} ${CPARSL_EXAMPLE_CHECK} ${ex}
              $<TARGET_FILE:${ex}> ${extra})
    set_tests_properties(mpi.tiers.example.${ex} PROPERTIES TIMEOUT 180
      LABELS mpi RUN_SERIAL TRUE
      ENVIRONMENT "${CPARSL_MPI_TEST_ENV};CPARSL_LAUNCH=${launch8};CPARSL_CONFIG=${CMAKE_CURRENT_LIST_DIR}/tiers.yaml;CPARSL_EXPECT_LAYOUT=4 node manager(s), 2 sub-interchange(s)")
  endforeach()

  # Embedding: 4 ranks (a 2-rank simulation and a 3-rank pilot sharing
  # rank 0) and 5 (2 and 4).
  if(TARGET insitu)
    foreach(np 4 5)
      string(REPLACE ";" " " launch_np
             "${CPARSL_MPIEXEC};${MPIEXEC_NUMPROC_FLAG};${np}")
      add_test(NAME mpi.example.insitu_${np}
        COMMAND ${CPARSL_BASH} ${CPARSL_EXAMPLE_CHECK} insitu
                $<TARGET_FILE:insitu> 40)
      set_tests_properties(mpi.example.insitu_${np} PROPERTIES TIMEOUT 180
        LABELS mpi RUN_SERIAL TRUE
        ENVIRONMENT "${CPARSL_MPI_TEST_ENV};CPARSL_LAUNCH=${launch_np}")
    endforeach()
  endif()
endif()
