<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis simplifyLocal="1" maxScale="0" simplifyDrawingTol="1" readOnly="0" simplifyMaxScale="1" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" version="3.22.16-Białowieża" simplifyAlgorithm="0" minScale="100000000" labelsEnabled="0" simplifyDrawingHints="1" symbologyReferenceScale="-1">
 <flags>
  <Identifiable>1</Identifiable>
  <Removable>1</Removable>
  <Searchable>1</Searchable>
  <Private>0</Private>
 </flags>
 <temporal fixedDuration="0" startField="" accumulate="0" durationField="" endField="" startExpression="" enabled="0" mode="0" limitMode="0" durationUnit="min" endExpression="">
  <fixedRange>
   <start></start>
   <end></end>
  </fixedRange>
 </temporal>
 <renderer-v2 type="singleSymbol" forceraster="0" symbollevels="0" referencescale="-1" enableorderby="0">
  <symbols>
   <symbol clip_to_extent="1" type="fill" name="0" force_rhr="0" alpha="1">
    <data_defined_properties>
     <Option type="Map">
      <Option type="QString" name="name" value=""/>
      <Option name="properties"/>
      <Option type="QString" name="type" value="collection"/>
     </Option>
    </data_defined_properties>
    <layer class="SimpleFill" pass="0" locked="0" enabled="1">
     <Option type="Map">
      <Option type="QString" name="border_width_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="color" value="0,0,0,0"/>
      <Option type="QString" name="joinstyle" value="bevel"/>
      <Option type="QString" name="offset" value="0,0"/>
      <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="offset_unit" value="MM"/>
      <Option type="QString" name="outline_color" value="31,120,180,255"/>
      <Option type="QString" name="outline_style" value="dash"/>
      <Option type="QString" name="outline_width" value="0.6"/>
      <Option type="QString" name="outline_width_unit" value="MM"/>
      <Option type="QString" name="style" value="no"/>
     </Option>
     <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="color" v="0,0,0,0"/>
     <prop k="joinstyle" v="bevel"/>
     <prop k="offset" v="0,0"/>
     <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="offset_unit" v="MM"/>
     <prop k="outline_color" v="31,120,180,255"/>
     <prop k="outline_style" v="dash"/>
     <prop k="outline_width" v="0.6"/>
     <prop k="outline_width_unit" v="MM"/>
     <prop k="style" v="no"/>
     <data_defined_properties>
      <Option type="Map">
       <Option type="QString" name="name" value=""/>
       <Option name="properties"/>
       <Option type="QString" name="type" value="collection"/>
      </Option>
     </data_defined_properties>
    </layer>
   </symbol>
  </symbols>
  <rotation/>
  <sizescale/>
 </renderer-v2>
 <customproperties>
  <Option/>
 </customproperties>
 <blendMode>0</blendMode>
 <featureBlendMode>0</featureBlendMode>
 <layerOpacity>1</layerOpacity>
 <geometryOptions geometryPrecision="0" removeDuplicateNodes="0">
  <activeChecks type="StringList">
   <Option type="QString" value=""/>
  </activeChecks>
  <checkConfiguration/>
 </geometryOptions>
 <legend type="default-vector" showLabelLegend="0"/>
 <referencedLayers/>
 <fieldConfiguration>
  <field name="fid" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="scene_id" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="path" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="checksum" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="crs" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="processed_at" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="model" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="run_id" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="status" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="error" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="n_buildings" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="n_roads" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="n_road_centerlines" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="counts" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
 </fieldConfiguration>
 <aliases>
  <alias name="" field="fid" index="0"/>
  <alias name="" field="scene_id" index="1"/>
  <alias name="" field="path" index="2"/>
  <alias name="" field="checksum" index="3"/>
  <alias name="" field="crs" index="4"/>
  <alias name="" field="processed_at" index="5"/>
  <alias name="" field="model" index="6"/>
  <alias name="" field="run_id" index="7"/>
  <alias name="" field="status" index="8"/>
  <alias name="" field="error" index="9"/>
  <alias name="" field="n_buildings" index="10"/>
  <alias name="" field="n_roads" index="11"/>
  <alias name="" field="n_road_centerlines" index="12"/>
  <alias name="" field="counts" index="13"/>
 </aliases>
 <defaults>
  <default expression="" field="fid" applyOnUpdate="0"/>
  <default expression="" field="scene_id" applyOnUpdate="0"/>
  <default expression="" field="path" applyOnUpdate="0"/>
  <default expression="" field="checksum" applyOnUpdate="0"/>
  <default expression="" field="crs" applyOnUpdate="0"/>
  <default expression="" field="processed_at" applyOnUpdate="0"/>
  <default expression="" field="model" applyOnUpdate="0"/>
  <default expression="" field="run_id" applyOnUpdate="0"/>
  <default expression="" field="status" applyOnUpdate="0"/>
  <default expression="" field="error" applyOnUpdate="0"/>
  <default expression="" field="n_buildings" applyOnUpdate="0"/>
  <default expression="" field="n_roads" applyOnUpdate="0"/>
  <default expression="" field="n_road_centerlines" applyOnUpdate="0"/>
  <default expression="" field="counts" applyOnUpdate="0"/>
 </defaults>
 <constraints>
  <constraint unique_strength="1" field="fid" constraints="3" notnull_strength="1" exp_strength="0"/>
  <constraint unique_strength="0" field="scene_id" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="path" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="checksum" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="crs" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="processed_at" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="model" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="run_id" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="status" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="error" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="n_buildings" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="n_roads" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="n_road_centerlines" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="counts" constraints="0" notnull_strength="0" exp_strength="0"/>
 </constraints>
 <constraintExpressions>
  <constraint field="fid" exp="" desc=""/>
  <constraint field="scene_id" exp="" desc=""/>
  <constraint field="path" exp="" desc=""/>
  <constraint field="checksum" exp="" desc=""/>
  <constraint field="crs" exp="" desc=""/>
  <constraint field="processed_at" exp="" desc=""/>
  <constraint field="model" exp="" desc=""/>
  <constraint field="run_id" exp="" desc=""/>
  <constraint field="status" exp="" desc=""/>
  <constraint field="error" exp="" desc=""/>
  <constraint field="n_buildings" exp="" desc=""/>
  <constraint field="n_roads" exp="" desc=""/>
  <constraint field="n_road_centerlines" exp="" desc=""/>
  <constraint field="counts" exp="" desc=""/>
 </constraintExpressions>
 <expressionfields/>
 <attributeactions/>
 <attributetableconfig sortOrder="0" actionWidgetStyle="dropDown" sortExpression="">
  <columns/>
 </attributetableconfig>
 <conditionalstyles>
  <rowstyles/>
  <fieldstyles/>
 </conditionalstyles>
 <storedexpressions/>
 <editform tolerant="1"></editform>
 <editforminit/>
 <editforminitcodesource>0</editforminitcodesource>
 <editforminitfilepath></editforminitfilepath>
 <editforminitcode><![CDATA[]]></editforminitcode>
 <featformsuppress>0</featformsuppress>
 <editorlayout>generatedlayout</editorlayout>
 <editable/>
 <labelOnTop/>
 <reuseLastValue/>
 <dataDefinedFieldProperties/>
 <widgets/>
 <previewExpression></previewExpression>
 <mapTip></mapTip>
 <layerGeometryType>2</layerGeometryType>
</qgis>
