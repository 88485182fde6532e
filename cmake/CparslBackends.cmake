# Generate backends.c from the plugin lists set in the top CMakeLists.txt.
function(cparsl_table out_decls out_items type)
  set(decls "")
  set(items "")
  foreach(sym IN LISTS ARGN)
    string(APPEND decls "extern const ${type} ${sym};\n")
    string(APPEND items "    &${sym},\n")
  endforeach()
  set(${out_decls} "${decls}" PARENT_SCOPE)
  set(${out_items} "${items}" PARENT_SCOPE)
endfunction()

cparsl_table(EXEC_DECLS EXEC_ITEMS "struct cparsl_executor_ops" ${CPARSL_EXECUTORS})
cparsl_table(KIND_DECLS KIND_ITEMS "struct cparsl_app_kind" ${CPARSL_APP_KINDS})
cparsl_table(STORE_DECLS STORE_ITEMS "struct cparsl_store_ops" ${CPARSL_STORES})
configure_file(${PROJECT_SOURCE_DIR}/core/backends.c.in
               ${CMAKE_BINARY_DIR}/generated/backends.c @ONLY)
