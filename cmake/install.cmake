# `cmake --install build --prefix P` puts the engine where another CMake project finds it:
#   P/include/dualflow/{kernels,engine,models,train}/...   the headers, as the sources include them
#   P/lib/libdualflow_{kernels,engine,models,train}.a      the layer libraries
#   P/lib/cmake/dualflow/dualflowConfig.cmake              find_package(dualflow) -> dualflow::train, ...
#   P/bin/dualflow                                         the program
# A program then links the layer it needs: target_link_libraries(app PRIVATE dualflow::train).
include(CMakePackageConfigHelpers)

set(DUALFLOW_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/dualflow)
foreach(layer kernels engine models train)
  set_target_properties(dualflow_${layer} PROPERTIES EXPORT_NAME ${layer})
  add_library(dualflow::${layer} ALIAS dualflow_${layer})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${layer}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dualflow/${layer}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh" PATTERN "cli" EXCLUDE)
endforeach()
# The warning flags are a private, build-only interface; static libraries still name it.
set_target_properties(dualflow_warnings PROPERTIES EXPORT_NAME warnings)
install(TARGETS dualflow_kernels dualflow_engine dualflow_models dualflow_train dualflow_warnings
        EXPORT dualflowTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS dualflow RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT dualflowTargets NAMESPACE dualflow:: DESTINATION ${DUALFLOW_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dualflowConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dualflowConfig.cmake INSTALL_DESTINATION ${DUALFLOW_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dualflowConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dualflowConfig.cmake ${PROJECT_BINARY_DIR}/dualflowConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/Findstb.cmake
        DESTINATION ${DUALFLOW_INSTALL_CMAKEDIR})
