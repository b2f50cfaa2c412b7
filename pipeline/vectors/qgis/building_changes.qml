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
 <renderer-v2 type="categorizedSymbol" forceraster="0" symbollevels="0" referencescale="-1" attr="change" enableorderby="0">
  <categories>
   <category symbol="0" value="new" label="new building" render="true"/>
   <category symbol="1" value="removed" label="removed building" render="true"/>
   <category symbol="2" value="changed" label="changed footprint" render="true"/>
  </categories>
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
      <Option type="QString" name="color" value="51,160,44,120"/>
      <Option type="QString" name="joinstyle" value="bevel"/>
      <Option type="QString" name="offset" value="0,0"/>
      <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="offset_unit" value="MM"/>
      <Option type="QString" name="outline_color" value="51,160,44,255"/>
      <Option type="QString" name="outline_style" value="solid"/>
      <Option type="QString" name="outline_width" value="0.6"/>
      <Option type="QString" name="outline_width_unit" value="MM"/>
      <Option type="QString" name="style" value="solid"/>
     </Option>
     <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="color" v="51,160,44,120"/>
     <prop k="joinstyle" v="bevel"/>
     <prop k="offset" v="0,0"/>
     <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="offset_unit" v="MM"/>
     <prop k="outline_color" v="51,160,44,255"/>
     <prop k="outline_style" v="solid"/>
     <prop k="outline_width" v="0.6"/>
     <prop k="outline_width_unit" v="MM"/>
     <prop k="style" v="solid"/>
     <data_defined_properties>
      <Option type="Map">
       <Option type="QString" name="name" value=""/>
       <Option name="properties"/>
       <Option type="QString" name="type" value="collection"/>
      </Option>
     </data_defined_properties>
    </layer>
   </symbol>
   <symbol clip_to_extent="1" type="fill" name="1" force_rhr="0" alpha="1">
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
      <Option type="QString" name="color" value="227,26,28,120"/>
      <Option type="QString" name="joinstyle" value="bevel"/>
      <Option type="QString" name="offset" value="0,0"/>
      <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="offset_unit" value="MM"/>
      <Option type="QString" name="outline_color" value="227,26,28,255"/>
      <Option type="QString" name="outline_style" value="solid"/>
      <Option type="QString" name="outline_width" value="0.6"/>
      <Option type="QString" name="outline_width_unit" value="MM"/>
      <Option type="QString" name="style" value="solid"/>
     </Option>
     <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="color" v="227,26,28,120"/>
     <prop k="joinstyle" v="bevel"/>
     <prop k="offset" v="0,0"/>
     <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="offset_unit" v="MM"/>
     <prop k="outline_color" v="227,26,28,255"/>
     <prop k="outline_style" v="solid"/>
     <prop k="outline_width" v="0.6"/>
     <prop k="outline_width_unit" v="MM"/>
     <prop k="style" v="solid"/>
     <data_defined_properties>
      <Option type="Map">
       <Option type="QString" name="name" value=""/>
       <Option name="properties"/>
       <Option type="QString" name="type" value="collection"/>
      </Option>
     </data_defined_properties>
    </layer>
   </symbol>
   <symbol clip_to_extent="1" type="fill" name="2" force_rhr="0" alpha="1">
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
      <Option type="QString" name="color" value="255,176,0,120"/>
      <Option type="QString" name="joinstyle" value="bevel"/>
      <Option type="QString" name="offset" value="0,0"/>
      <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="offset_unit" value="MM"/>
      <Option type="QString" name="outline_color" value="255,176,0,255"/>
      <Option type="QString" name="outline_style" value="solid"/>
      <Option type="QString" name="outline_width" value="0.6"/>
      <Option type="QString" name="outline_width_unit" value="MM"/>
      <Option type="QString" name="style" value="solid"/>
     </Option>
     <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="color" v="255,176,0,120"/>
     <prop k="joinstyle" v="bevel"/>
     <prop k="offset" v="0,0"/>
     <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="offset_unit" v="MM"/>
     <prop k="outline_color" v="255,176,0,255"/>
     <prop k="outline_style" v="solid"/>
     <prop k="outline_width" v="0.6"/>
     <prop k="outline_width_unit" v="MM"/>
     <prop k="style" v="solid"/>
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
  <source-symbol>
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
      <Option type="QString" name="color" value="255,176,0,120"/>
      <Option type="QString" name="joinstyle" value="bevel"/>
      <Option type="QString" name="offset" value="0,0"/>
      <Option type="QString" name="offset_map_unit_scale" value="3x:0,0,0,0,0,0"/>
      <Option type="QString" name="offset_unit" value="MM"/>
      <Option type="QString" name="outline_color" value="255,176,0,255"/>
      <Option type="QString" name="outline_style" value="solid"/>
      <Option type="QString" name="outline_width" value="0.6"/>
      <Option type="QString" name="outline_width_unit" value="MM"/>
      <Option type="QString" name="style" value="solid"/>
     </Option>
     <prop k="border_width_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="color" v="255,176,0,120"/>
     <prop k="joinstyle" v="bevel"/>
     <prop k="offset" v="0,0"/>
     <prop k="offset_map_unit_scale" v="3x:0,0,0,0,0,0"/>
     <prop k="offset_unit" v="MM"/>
     <prop k="outline_color" v="255,176,0,255"/>
     <prop k="outline_style" v="solid"/>
     <prop k="outline_width" v="0.6"/>
     <prop k="outline_width_unit" v="MM"/>
     <prop k="style" v="solid"/>
     <data_defined_properties>
      <Option type="Map">
       <Option type="QString" name="name" value=""/>
       <Option name="properties"/>
       <Option type="QString" name="type" value="collection"/>
      </Option>
     </data_defined_properties>
    </layer>
   </symbol>
  </source-symbol>
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
  <field name="change" configurationFlags="None">
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
  <field name="earlier_scene_id" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="scene_time" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="earlier_time" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="time_source" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="earlier_time_source" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="area_m2" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="earlier_area_m2" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="area_change_m2" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="score" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="earlier_score" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="iou" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
  <field name="created_at" configurationFlags="None">
   <editWidget type="">
    <config>
     <Option/>
    </config>
   </editWidget>
  </field>
 </fieldConfiguration>
 <aliases>
  <alias name="" field="fid" index="0"/>
  <alias name="" field="change" index="1"/>
  <alias name="" field="scene_id" index="2"/>
  <alias name="" field="earlier_scene_id" index="3"/>
  <alias name="" field="scene_time" index="4"/>
  <alias name="" field="earlier_time" index="5"/>
  <alias name="" field="time_source" index="6"/>
  <alias name="" field="earlier_time_source" index="7"/>
  <alias name="" field="area_m2" index="8"/>
  <alias name="" field="earlier_area_m2" index="9"/>
  <alias name="" field="area_change_m2" index="10"/>
  <alias name="" field="score" index="11"/>
  <alias name="" field="earlier_score" index="12"/>
  <alias name="" field="iou" index="13"/>
  <alias name="" field="created_at" index="14"/>
 </aliases>
 <defaults>
  <default expression="" field="fid" applyOnUpdate="0"/>
  <default expression="" field="change" applyOnUpdate="0"/>
  <default expression="" field="scene_id" applyOnUpdate="0"/>
  <default expression="" field="earlier_scene_id" applyOnUpdate="0"/>
  <default expression="" field="scene_time" applyOnUpdate="0"/>
  <default expression="" field="earlier_time" applyOnUpdate="0"/>
  <default expression="" field="time_source" applyOnUpdate="0"/>
  <default expression="" field="earlier_time_source" applyOnUpdate="0"/>
  <default expression="" field="area_m2" applyOnUpdate="0"/>
  <default expression="" field="earlier_area_m2" applyOnUpdate="0"/>
  <default expression="" field="area_change_m2" applyOnUpdate="0"/>
  <default expression="" field="score" applyOnUpdate="0"/>
  <default expression="" field="earlier_score" applyOnUpdate="0"/>
  <default expression="" field="iou" applyOnUpdate="0"/>
  <default expression="" field="created_at" applyOnUpdate="0"/>
 </defaults>
 <constraints>
  <constraint unique_strength="1" field="fid" constraints="3" notnull_strength="1" exp_strength="0"/>
  <constraint unique_strength="0" field="change" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="scene_id" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="earlier_scene_id" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="scene_time" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="earlier_time" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="time_source" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="earlier_time_source" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="area_m2" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="earlier_area_m2" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="area_change_m2" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="score" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="earlier_score" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="iou" constraints="0" notnull_strength="0" exp_strength="0"/>
  <constraint unique_strength="0" field="created_at" constraints="0" notnull_strength="0" exp_strength="0"/>
 </constraints>
 <constraintExpressions>
  <constraint field="fid" exp="" desc=""/>
  <constraint field="change" exp="" desc=""/>
  <constraint field="scene_id" exp="" desc=""/>
  <constraint field="earlier_scene_id" exp="" desc=""/>
  <constraint field="scene_time" exp="" desc=""/>
  <constraint field="earlier_time" exp="" desc=""/>
  <constraint field="time_source" exp="" desc=""/>
  <constraint field="earlier_time_source" exp="" desc=""/>
  <constraint field="area_m2" exp="" desc=""/>
  <constraint field="earlier_area_m2" exp="" desc=""/>
  <constraint field="area_change_m2" exp="" desc=""/>
  <constraint field="score" exp="" desc=""/>
  <constraint field="earlier_score" exp="" desc=""/>
  <constraint field="iou" exp="" desc=""/>
  <constraint field="created_at" exp="" desc=""/>
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
